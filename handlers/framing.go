package handlers

import (
	"bytes"

	"github.com/gofiber/fiber/v2"
	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// CheckFraming is the first Fiber handler: it refuses (400, connection
// closed) a request that carries both Transfer-Encoding and Content-Length,
// or a Transfer-Encoding other than chunked. fasthttp reads the first by
// its chunked framing (and then rewrites Content-Length to the decoded
// size), and the second ("identity") as a request without a body, while a
// proxy in front of the relay may have framed either otherwise (by
// Content-Length; to the connection's end): the bytes the two disagree on
// would be read as a second, smuggled request (seen: a body read as a GET
// with another tenant's key). RFC 9112 6.1 and 6.3 let a server reject
// the first and require a 400 and a close for the second. fasthttp keeps
// no trace of the framing but the raw header block, so that is scanned; it
// costs one pass over the header names.
func (h *Relay) CheckFraming(c *fiber.Ctx) error {
	ctx := c.Context()
	msg := framingRefusal(ctx.Request.Header.RawHeaders())
	if msg == "" {
		return c.Next()
	}
	ctx.SetConnectionClose()
	h.rejectEarly(ctx, fasthttp.StatusBadRequest, record.ErrBadRequest, msg)
	return nil
}

// framingRefusal is why CheckFraming refuses a request with the raw header
// block raw, or "".
func framingRefusal(raw []byte) string {
	te, cl, chunked := scanFraming(raw)
	switch {
	case te && cl:
		return msgFraming
	case te && !chunked:
		return msgTransferEncoding
	}
	return ""
}

// Messages of CheckFraming's refusals.
const (
	msgFraming          = "both Transfer-Encoding and Content-Length"
	msgTransferEncoding = "a Transfer-Encoding other than chunked"
)

// scanFraming reports whether the raw header block has Transfer-Encoding
// and Content-Length fields, in any letter case, and whether every
// Transfer-Encoding field says chunked alone.
func scanFraming(raw []byte) (te, cl, chunked bool) {
	chunked = true
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		switch len(k) { // names only: fasthttp rejects a space before ':'
		case len("transfer-encoding"):
			if bytes.EqualFold(k, []byte("transfer-encoding")) {
				te = true
				chunked = chunked && bytes.EqualFold(bytes.TrimSpace(v), []byte("chunked"))
			}
		case len("content-length"):
			cl = cl || bytes.EqualFold(k, []byte("content-length"))
		}
	}
	return te, cl, chunked
}
