package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// Errors a response can end with; the report counts them by kind.
var (
	errMalformed = errors.New("malformed response")
	errTruncated = errors.New("response cut short")
)

// epoch anchors mono: every timestamp in the load generator is nanoseconds
// on the monotonic clock since the process started.
var epoch = time.Now()

func mono() int64 { return int64(time.Since(epoch)) }

// timing is what one response measured, in ns since its start.
type timing struct {
	status     int
	ttfb       int64 // first response byte
	firstEvent int64 // first complete SSE event (sse) or first body byte (raw); -1 if none
	total      int64
	bytes      int64 // body bytes
	events     int
}

// conn is one keep-alive HTTP/1.1 connection that sends the same prebuilt
// request again and again and reads streamed responses with a timestamp on
// every read. It is hand-written on net.Conn, not an HTTP client, so that
// the only work per chunk is one read, one scan and one clock read.
type conn struct {
	c      net.Conn
	buf    []byte
	r, w   int
	readAt int64 // mono() of the latest read
	sse    bool
	gaps   []int64 // this response's gaps between events, ns

	// per response
	start    int64
	lastEv   int64
	prevNL   bool
	tm       timing
	keepOpen bool
}

func newConn(c net.Conn, bufSize int, sse bool) *conn {
	return &conn{c: c, buf: make([]byte, bufSize), sse: sse}
}

// fill reads once more into the buffer, growing it only when a header line
// does not fit.
func (c *conn) fill() error {
	if c.r == c.w {
		c.r, c.w = 0, 0
	} else if c.w == len(c.buf) {
		if c.r > 0 {
			c.w = copy(c.buf, c.buf[c.r:c.w])
			c.r = 0
		} else {
			c.buf = append(c.buf, make([]byte, len(c.buf))...)
		}
	}
	n, err := c.c.Read(c.buf[c.w:])
	if n > 0 {
		c.w += n
		c.readAt = mono()
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// line returns the next CRLF-terminated line without its CRLF.
func (c *conn) line() ([]byte, error) {
	for {
		if i := bytes.Index(c.buf[c.r:c.w], crlf); i >= 0 {
			l := c.buf[c.r : c.r+i]
			c.r += i + 2
			return l, nil
		}
		if c.w-c.r > 64<<10 {
			return nil, errMalformed
		}
		if err := c.fill(); err != nil {
			return nil, err
		}
	}
}

var (
	crlf          = []byte("\r\n")
	hdrChunked    = []byte("transfer-encoding: chunked")
	hdrLength     = []byte("content-length:")
	hdrConnClose  = []byte("connection: close")
	hdrHTTPPrefix = []byte("HTTP/1.")
)

// roundTrip writes req and reads the whole response. start is the time the
// latency counts from: the intended send time in open-loop mode.
func (c *conn) roundTrip(req []byte, start int64, timeout time.Duration) (timing, error) {
	c.start, c.lastEv, c.prevNL = start, -1, false
	c.gaps = c.gaps[:0]
	c.tm = timing{firstEvent: -1, ttfb: -1}
	c.keepOpen = true
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.c.Write(req); err != nil {
		return c.tm, fmt.Errorf("write: %w", err)
	}
	if c.r == c.w {
		if err := c.fill(); err != nil {
			return c.tm, err
		}
	}
	c.tm.ttfb = c.readAt - start

	status, err := c.line()
	if err != nil {
		return c.tm, err
	}
	if len(status) < 12 || !bytes.HasPrefix(status, hdrHTTPPrefix) {
		return c.tm, errMalformed
	}
	code, err := strconv.Atoi(string(status[9:12]))
	if err != nil {
		return c.tm, errMalformed
	}
	c.tm.status = code
	if status[7] == '0' {
		c.keepOpen = false
	}
	chunked, length := false, int64(-1)
	for {
		h, err := c.line()
		if err != nil {
			return c.tm, err
		}
		if len(h) == 0 {
			break
		}
		lower(h)
		switch {
		case bytes.Equal(h, hdrChunked):
			chunked = true
		case bytes.HasPrefix(h, hdrLength):
			length, err = strconv.ParseInt(string(bytes.TrimSpace(h[len(hdrLength):])), 10, 64)
			if err != nil {
				return c.tm, errMalformed
			}
		case bytes.Equal(h, hdrConnClose):
			c.keepOpen = false
		}
	}
	switch {
	case chunked:
		err = c.readChunked()
	case length >= 0:
		err = c.readN(length)
	default:
		c.keepOpen = false
		err = c.readToEOF()
	}
	c.tm.total = c.readAt - start
	return c.tm, err
}

// lower lowercases a header line's name and value in place; the values the
// reader compares are ASCII.
func lower(b []byte) {
	for i, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			b[i] = ch + 'a' - 'A'
		}
	}
}

func (c *conn) readChunked() error {
	for {
		l, err := c.line()
		if err != nil {
			return truncated(err)
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(l)), 16, 64)
		if err != nil || size < 0 {
			return errMalformed
		}
		if size == 0 {
			for { // trailers up to the empty line
				t, err := c.line()
				if err != nil {
					return truncated(err)
				}
				if len(t) == 0 {
					return nil
				}
			}
		}
		if err := c.readN(size); err != nil {
			return err
		}
		l, err = c.line()
		if err != nil {
			return truncated(err)
		}
		if len(l) != 0 {
			return errMalformed
		}
	}
}

// readN consumes n body bytes.
func (c *conn) readN(n int64) error {
	for n > 0 {
		if c.r == c.w {
			if err := c.fill(); err != nil {
				return truncated(err)
			}
		}
		k := int(min(int64(c.w-c.r), n))
		c.body(c.buf[c.r : c.r+k])
		c.r += k
		n -= int64(k)
	}
	return nil
}

func (c *conn) readToEOF() error {
	for {
		if c.r < c.w {
			c.body(c.buf[c.r:c.w])
			c.r = c.w
		}
		if err := c.fill(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// body takes body bytes that arrived by the read at c.readAt. In SSE mode
// an event is complete at its blank line; in raw mode every read that
// carries body bytes counts as one event.
func (c *conn) body(p []byte) {
	c.tm.bytes += int64(len(p))
	if !c.sse {
		c.event()
		return
	}
	for len(p) > 0 {
		// IndexByte finds the first newline, so a blank line is a newline
		// at the very start of p right after one that ended the last piece.
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.prevNL = false
			return
		}
		if i == 0 && c.prevNL {
			c.event()
			c.prevNL = false
		} else {
			c.prevNL = true
		}
		p = p[i+1:]
	}
}

func (c *conn) event() {
	at := c.readAt
	if c.lastEv == at && !c.sse {
		return // the same read
	}
	if c.tm.firstEvent < 0 {
		c.tm.firstEvent = at - c.start
	} else {
		c.gaps = append(c.gaps, at-c.lastEv)
	}
	c.lastEv = at
	c.tm.events++
}

func truncated(err error) error {
	if errors.Is(err, io.EOF) {
		return errTruncated
	}
	return err
}
