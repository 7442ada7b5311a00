package handlers

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// ReadError wraps next, the server's error handler (Fiber's, which maps
// the error to a status and calls ServerError): a request whose header
// block arrived whole and that fasthttp refused (headRefused) is answered
// and logged here, as a request; every other error goes to next. Fiber
// keeps only the error's text, and the text says no more than "400" for a
// header fasthttp could not parse and for one the client broke off.
func (h *Relay) ReadError(next func(*fasthttp.RequestCtx, error)) func(*fasthttp.RequestCtx, error) {
	return func(ctx *fasthttp.RequestCtx, err error) {
		var small *fasthttp.ErrSmallBuffer
		if errors.As(err, &small) {
			if !h.refuseLargeHead(ctx) {
				next(ctx, err)
			}
			return
		}
		// fasthttp reset a request whose body it failed to read: its
		// head is given back for the answer's id and the row (kepthead.go).
		if restoreKeptHead(ctx, err) && bodyCutShort(err) {
			// The client ended its connection inside the body: Fiber would
			// call that a malformed request (or, for a reset, an upstream's
			// 502); it is the client that left.
			h.rejectEarly(ctx, fasthttp.StatusBadRequest, record.ErrClientClosed, msgBodyCut)
			return
		}
		if len(ctx.Request.Header.RawHeaders()) != 0 || !headRefused(err) {
			next(ctx, err)
			return
		}
		h.refuseHead(ctx)
	}
}

// refuseLargeHead answers (431) and logs a request whose header block
// outgrew the server's read buffer, with what the read that began it
// holds (headKeeper): its request line and the header lines that came
// whole in it, so that the row has its method, path, route and, when the
// key's line was among them, its key and tenant. It reports false, and
// answers nothing, when the connection kept no such read or its lines do
// not parse as a request's head (a request line alone over the buffer):
// there is then no request to log. The kept head is dropped either way.
func (h *Relay) refuseLargeHead(ctx *fasthttp.RequestCtx) bool {
	k, ok := ctx.Conn().(headKeeper)
	if !ok {
		return false
	}
	defer k.DropHead()
	raw := k.KeptHead()
	end := bytes.LastIndexByte(raw, '\n')
	if end < 0 || len(ctx.Request.Header.RawHeaders()) != 0 {
		return false
	}
	head := make([]byte, 0, end+3)
	head = append(append(head, raw[:end+1]...), '\r', '\n')
	if !restoreHead(&ctx.Request, head) {
		return false
	}
	linger(ctx) // a body may follow the head
	h.rejectEarly(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, record.ErrBadRequest, msgHeadTooLarge)
	return true
}

// msgHeadTooLarge answers a request whose header block outgrew the
// server's read buffer.
const msgHeadTooLarge = "request headers too large"

// msgBodyCut answers a request whose client ended its connection inside
// the body (a half-closed client still reads it).
const msgBodyCut = "the connection ended inside the request body"

// bodyReadFailed reports whether err is fasthttp's failure to read a
// request's body after its header was read whole: too large, or chunks that
// break their framing (their sizes included).
func bodyReadFailed(err error) bool {
	var broken fasthttp.ErrBrokenChunk
	if errors.Is(err, fasthttp.ErrBodyTooLarge) || errors.As(err, &broken) {
		return true
	}
	// A chunk size that is no hex number: fasthttp's hex reader serves
	// chunk sizes alone, and its errors are not exported.
	msg := err.Error()
	return msg == "empty hex number" || msg == "too large hex number"
}

// headerReadError begins the text of every error fasthttp returns from
// reading a request's header block.
const headerReadError = "error when reading request headers: "

// headRefused reports whether err, from the server's read of a request,
// says that its header block arrived whole and fasthttp refused it (a
// control character, a malformed line or request line, no Host), not that
// it did not arrive whole: the connection ended, broke or timed out inside
// it, or it outgrew the read buffer (431).
func headRefused(err error) bool {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &small), errors.As(err, &netErr):
		return false
	}
	return strings.HasPrefix(err.Error(), headerReadError)
}

// badHeadKeeper is a connection that keeps the head CheckRequestStart
// kept from the read that began its current request (app's edgeConn).
type badHeadKeeper interface {
	TakeBadHead() *BadHead
}

// refuseHead answers (400) and logs a request whose header block fasthttp
// refused. With the head its connection kept (BadHead), the row has the
// request's method, path, route, key and headers, the offending field
// named by badValue in place of its value, and the answer names it too;
// without, the row has no more than its id, time, client address and
// status.
func (h *Relay) refuseHead(ctx *fasthttp.RequestCtx) {
	if k, ok := ctx.Conn().(badHeadKeeper); ok {
		if bh := k.TakeBadHead(); bh != nil && bh.restore(&ctx.Request) {
			h.rejectEarly(ctx, fasthttp.StatusBadRequest, record.ErrBadRequest, bh.message())
			return
		}
	}
	rec, admitted := h.beginRecord(ctx, nil, nil, nil)
	if !admitted {
		h.refuseOverloaded(ctx, rec)
		return
	}
	h.reject(ctx, rec, fasthttp.StatusBadRequest, record.ErrBadRequest, "malformed request")
}
