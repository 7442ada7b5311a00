package handlers

import (
	"errors"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// ServerError is the Fiber error handler: it answers failures that happen
// before a handler runs (body over the server's limit, malformed or slow
// requests) and errors returned by other handlers in the relay's JSON shape,
// and logs a row for requests whose headers were read.
func (h *Relay) ServerError(c *fiber.Ctx, err error) error {
	status := fiber.StatusInternalServerError
	var fe *fiber.Error
	if errors.As(err, &fe) {
		status = fe.Code
	}
	errType, msg := record.ErrInternal, "internal error"
	if m := framingRefusal(c.Context().Request.Header.RawHeaders()); m != "" && status == fiber.StatusRequestTimeout {
		// HeaderReceived gave its body no time: CheckFraming's refusal.
		c.Context().SetConnectionClose()
		h.rejectEarly(c.Context(), fasthttp.StatusBadRequest, record.ErrBadRequest, m)
		return nil
	}
	// Answered before the body was read (a 401 too: the 413 of a request
	// without a key): the close lingers.
	uploading := status == fiber.StatusRequestEntityTooLarge || status == fiber.StatusRequestHeaderFieldsTooLarge
	switch status {
	case fiber.StatusRequestEntityTooLarge:
		errType, msg = record.ErrBodyTooLarge, msgBodyTooLarge
		if h.unkeyed(c.Context()) {
			// Read only up to UnkeyedBodyLimit (HeaderReceived): the
			// gate would refuse it for its key first.
			status, errType, msg = fiber.StatusUnauthorized, record.ErrUnauthorized, msgNoKey
		}
	case fiber.StatusNotFound:
		errType, msg = record.ErrNotFound, "no route for this path"
	case fiber.StatusRequestTimeout:
		errType, msg = record.ErrBadRequest, "request not received in time"
		if h.graceOver.Load() {
			// The drain's end cut its upload (app's edgeSet): it is the
			// relay that stops, not the client that was slow.
			status, errType, msg = fiber.StatusServiceUnavailable, record.ErrShuttingDown, "the relay is shutting down"
			c.Context().SetConnectionClose()
		}
	case fiber.StatusRequestHeaderFieldsTooLarge:
		errType, msg = record.ErrBadRequest, msgHeadTooLarge
	case fiber.StatusMethodNotAllowed:
		errType, msg = record.ErrBadRequest, "method not allowed"
	case fiber.StatusBadGateway:
		// Fiber's server error handler maps a network error on the client's
		// own connection (reset mid-request) to 502; it is the client that
		// went away, not an upstream, and no 5xx must be counted for it.
		status, errType, msg = fiber.StatusBadRequest, record.ErrClientClosed, "connection failed while reading the request"
	default:
		if status >= 400 && status < 500 {
			errType, msg = record.ErrBadRequest, "malformed request"
		}
	}
	ctx := c.Context()
	if uploading {
		linger(ctx) // the client is still sending its body
	}
	if len(ctx.Request.Header.RawHeaders()) == 0 { // none given back by ReadError either
		// The header block was never read whole (a reset or timeout before
		// or inside it; one read whole and refused went to ReadError):
		// there is no request to log, just answer. Method() is no test for
		// this, it reads "GET" when unset; before, every port scan or
		// slowloris connection became a row (path "/", often a 502).
		writeError(ctx, status, errType, msg)
		return nil
	}
	h.rejectEarly(ctx, status, errType, msg)
	return nil
}

// lingerer is a client connection whose close can linger (app's edgeConn):
// it reads and discards what the client still sends before it closes, so
// that the client reads the refusal instead of a reset.
type lingerer interface{ Linger() }

// linger makes ctx's connection linger at its close: a refusal is being
// written while the client still sends its request.
func linger(ctx *fasthttp.RequestCtx) {
	if l, ok := ctx.Conn().(lingerer); ok {
		l.Linger()
	}
}

// msgBodyTooLarge is the message of a 413 for a body over the server's
// limit (Options.BodyLimit); a route's own limit names its size.
const msgBodyTooLarge = "request body too large"

// rejectEarly answers and logs a request that failed before serve ran. A
// valid relay key in it names the key and its tenant in the row (an
// oversized body is refused before the key is checked); an invalid one
// changes nothing.
func (h *Relay) rejectEarly(ctx *fasthttp.RequestCtx, status int, errType, msg string) {
	h.closeIfDraining(ctx)
	cfg := h.cur.Load()
	rec, _, admitted := h.beginOn(ctx, cfg)
	backdate(ctx, rec)
	requestKey(ctx, cfg, rec)
	if cl := ctx.Request.Header.ContentLength(); cl > 0 {
		// Declared, not received, unless the body was read whole before
		// the refusal (a 505, a bad method: fasthttp reads it first).
		rec.BytesIn, rec.BytesInDeclared = int64(cl), len(ctx.Request.Body()) != cl
	}
	if !admitted {
		h.refuseOverloaded(ctx, rec)
		return
	}
	h.reject(ctx, rec, status, errType, msg)
}

// backdate moves rec's start back to when its request began to arrive (the
// read that began it: app's edgeConn). A request refused inside its body
// (read_timeout's 408, a cut upload) had a row that began at the refusal
// and lasted nothing, though the client had been sending for seconds; for
// one refused at its head the two are the same. A served request's row
// still starts when its handler runs: its TTFB and TTFT count from there.
func backdate(ctx *fasthttp.RequestCtx, rec *record.Record) {
	b, ok := ctx.Conn().(requestBeginner)
	if !ok {
		return
	}
	if at := b.RequestBegan(); at != 0 {
		if d := time.Duration(mono.Now() - at); d > 0 {
			rec.Start = rec.Start.Add(-d)
		}
	}
}

// unkeyed reports whether ctx's request carries no valid relay key.
func (h *Relay) unkeyed(ctx *fasthttp.RequestCtx) bool {
	return h.cur.Load().Keys.Lookup(requestCredential(&ctx.Request.Header, ctx.URI().QueryString())) == nil
}
