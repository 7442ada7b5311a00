package handlers

import (
	"bytes"

	"github.com/gofiber/fiber/v2"
	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// CheckFraming is the first Fiber handler: it refuses (400, connection
// closed) a request that carries both Transfer-Encoding and Content-Length.
// fasthttp reads such a request by its chunked framing (and then rewrites
// Content-Length to the decoded size), while a proxy in front of the relay
// may have framed it by Content-Length: the bytes the two disagree on would
// be read as a second, smuggled request. RFC 9112 6.1 lets a server reject
// the message. fasthttp keeps no trace of the framing but the raw header
// block, so that is scanned; it costs one pass over the header names.
func (h *Relay) CheckFraming(c *fiber.Ctx) error {
	ctx := c.Context()
	te, cl := scanFraming(ctx.Request.Header.RawHeaders())
	if !te || !cl {
		return c.Next()
	}
	ctx.SetConnectionClose()
	h.rejectEarly(ctx, fasthttp.StatusBadRequest, record.ErrBadRequest, msgFraming)
	return nil
}

// msgFraming is the message of CheckFraming's refusal.
const msgFraming = "both Transfer-Encoding and Content-Length"

// scanFraming reports whether the raw header block has Transfer-Encoding
// and Content-Length fields, in any letter case.
func scanFraming(raw []byte) (te, cl bool) {
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		k, _, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		switch len(k) { // names only: fasthttp rejects a space before ':'
		case len("transfer-encoding"):
			te = te || bytes.EqualFold(k, []byte("transfer-encoding"))
		case len("content-length"):
			cl = cl || bytes.EqualFold(k, []byte("content-length"))
		}
	}
	return te, cl
}
