package mockllm

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Names of the per-request control headers; the package doc describes each.
const (
	HeaderChunks         = "X-Mock-Chunks"
	HeaderDelayMs        = "X-Mock-Delay-Ms"
	HeaderFirstByteDelay = "X-Mock-First-Byte-Delay-Ms"
	HeaderStatus         = "X-Mock-Status"
	HeaderStallAfter     = "X-Mock-Stall-After"
	HeaderResetAfter     = "X-Mock-Reset-After"
	HeaderChunkBytes     = "X-Mock-Chunk-Bytes"
	HeaderLength         = "X-Mock-Length"
	HeaderRequestID      = "X-Mock-Request-Id"
)

// Defaults and bounds of the control headers.
const (
	DefaultSSEChunks   = 20
	DefaultAudioChunks = 16
	DefaultChunkBytes  = 4096

	MaxChunks     = 1_000_000
	MaxChunkBytes = 1 << 20
	MaxDelayMs    = 60_000
)

// never marks an unset chunk index for stall and reset.
const never = -1

// control is the parsed set of control headers of one request.
type control struct {
	chunks     int // -1: the endpoint's default
	chunkBytes int
	delay      time.Duration
	firstByte  time.Duration
	status     int  // 0: none
	stallAfter int  // never: unset
	resetAfter int  // never: unset
	length     bool // audio: send Content-Length instead of chunked framing
	requestID  string
}

// stops reports whether the stream is cut before chunk i (0 <= i <= chunks).
func (c *control) stops(i int) bool {
	return c.stallAfter == i || c.resetAfter == i
}

// cut reports whether a stall or reset was asked for at all.
func (c *control) cut() bool {
	return c.stallAfter != never || c.resetAfter != never
}

func (c *control) chunkCount(def int) int {
	if c.chunks < 0 {
		return def
	}
	return c.chunks
}

func parseControl(h http.Header) (control, error) {
	c := control{chunks: -1, chunkBytes: DefaultChunkBytes, stallAfter: never, resetAfter: never, requestID: h.Get(HeaderRequestID)}
	var err error
	if c.chunks, err = headerInt(h, HeaderChunks, -1, 0, MaxChunks); err != nil {
		return c, err
	}
	if c.chunkBytes, err = headerInt(h, HeaderChunkBytes, DefaultChunkBytes, 1, MaxChunkBytes); err != nil {
		return c, err
	}
	if c.status, err = headerInt(h, HeaderStatus, 0, 200, 599); err != nil {
		return c, err
	}
	if c.stallAfter, err = headerInt(h, HeaderStallAfter, never, 0, MaxChunks); err != nil {
		return c, err
	}
	if c.resetAfter, err = headerInt(h, HeaderResetAfter, never, 0, MaxChunks); err != nil {
		return c, err
	}
	if c.stallAfter != never && c.resetAfter != never {
		return c, fmt.Errorf("mockllm: %s and %s: set at most one", HeaderStallAfter, HeaderResetAfter)
	}
	var length int
	if length, err = headerInt(h, HeaderLength, 0, 0, 1); err != nil {
		return c, err
	}
	c.length = length == 1
	if c.delay, err = headerMs(h, HeaderDelayMs); err != nil {
		return c, err
	}
	if c.firstByte, err = headerMs(h, HeaderFirstByteDelay); err != nil {
		return c, err
	}
	return c, nil
}

// headerInt parses header name as an integer in [lo, hi], def when absent.
func headerInt(h http.Header, name string, def, lo, hi int) (int, error) {
	v := h.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("mockllm: %s=%q: must be an integer in [%d, %d]", name, v, lo, hi)
	}
	return n, nil
}

// headerMs parses header name as a non-negative, possibly fractional, number
// of milliseconds, 0 when absent.
func headerMs(h http.Header, name string) (time.Duration, error) {
	v := h.Get(name)
	if v == "" {
		return 0, nil
	}
	ms, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(ms) || ms < 0 || ms > MaxDelayMs {
		return 0, fmt.Errorf("mockllm: %s=%q: must be milliseconds in [0, %d]", name, v, MaxDelayMs)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}
