package handlers

import (
	"context"

	"github.com/stream-relay/stream-relay/quota"
	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// A client that sends "Expect: 100-continue" waits for the server's
// "100 Continue" before it uploads the body (curl 7.88 sends it on its own
// for a body over 1 MiB, and waits up to a second). fasthttp sends it as
// soon as the header block is read, unless the server's ExpectHandler
// answers otherwise; then it sends that handler's status with the response
// as it stands, reads no body, runs no handler and closes the connection
// (the client may have begun to upload anyway).
// ContinueHandler, the older hook, can only have it answer 417.
//
// ExpectContinue is that handler: a request the relay would refuse whatever
// its body holds is refused by its own path (reject), before the upload, so
// it gets the answer it would get after it (the JSON error, X-Request-Id,
// a row, the metrics), but on a closed connection. The refusals are those
// that need no body: CheckRequest's and CheckFraming's, the drain, the
// relay key, X-Tenant-ID, a declared Content-Length over the route's limit
// (the server's for a path no route has), the storage's admission and the
// rate limit. Every other request gets 100 Continue and goes the ordinary
// way.
//
// The storage's admission (Admission.Admit) reserves a row, which takes the
// request's record, and serve begins its own once the body is read: what
// can be asked before the upload is whether the storage would refuse a row
// now (storageProbe), without reserving one. When it would, the request is
// begun and refused here as serve refuses it (Admit asked once, 503
// storage_overloaded with Retry-After); an Admission that cannot tell
// (no Overloaded method) leaves the decision to serve, after the upload.
//
// A request let through has spent its rate-limit token (one decision,
// taken over by serve) even when its upload then fails: the limiter has
// no way to give a token back.
//
// fasthttp's comment on ExpectHandler says the response must not be
// modified: it is left alone on the way to 100 Continue (what is set then
// would be part of the handler's answer); on a refusal it is the answer
// fasthttp sends (TestExpectContinueRefusedBeforeUpload checks it whole).

// ExpectContinue is the server's ExpectHandler (fasthttp.Server): it
// answers a request with "Expect: 100-continue" that the relay refuses
// whatever its body holds, before the body is sent, and returns that
// answer's status; fasthttp.StatusContinue lets the request go on.
func (h *Relay) ExpectContinue(ctx *fasthttp.RequestCtx) int {
	cfg := h.cur.Load()
	v := h.screenUnread(ctx, cfg)
	if v.status == 0 {
		if v.key == nil {
			return fasthttp.StatusContinue
		}
		if h.storageRefuses() {
			// Before the limiter, as in serve: a refused request takes
			// no token.
			return h.refuseUnread(ctx, cfg, &v, nil)
		}
		if cfg.Limiter == nil {
			return fasthttp.StatusContinue
		}
		// The limiter is asked once: serve takes this decision over
		// (takeRate), and a refusal saves the upload too.
		d := cfg.Limiter.Take(context.Background(), v.tenant, v.key.ID)
		if d.Allowed {
			ctx.SetUserValue(earlyRate{}, d)
			return fasthttp.StatusContinue
		}
		return h.refuseUnread(ctx, cfg, &v, &d)
	}
	return h.refuseUnread(ctx, cfg, &v, nil)
}

// screenUnread runs the checks of a request whose body is not read yet;
// a verdict without a key and without a refusal lets it go on unasked (no
// route: Fiber's own routes, or the 404 serve gives).
func (h *Relay) screenUnread(ctx *fasthttp.RequestCtx, cfg *Config) verdict {
	hdr := &ctx.Request.Header
	if status, msg := requestEdge(hdr); status != 0 { // CheckRequest's
		return verdict{status: status, errType: record.ErrBadRequest, msg: msg}
	}
	if te, cl := scanFraming(hdr.RawHeaders()); te && cl { // CheckFraming's
		return verdict{status: fasthttp.StatusBadRequest, errType: record.ErrBadRequest, msg: msgFraming}
	}
	declared := int64(hdr.ContentLength()) // -1: chunked
	rt := cfg.Routes.Find(ctx.Path())
	if rt == nil {
		if h.o.BodyLimit > 0 && declared > h.o.BodyLimit { // ServerError's
			return verdict{status: fasthttp.StatusRequestEntityTooLarge, errType: record.ErrBodyTooLarge, msg: msgBodyTooLarge}
		}
		return verdict{}
	}
	return h.gate(ctx, cfg, rt, declared)
}

// refuseUnread answers and logs a request refused before its body was read
// (v's refusal, or the limiter's decision d when not nil; neither: the
// storage's, storageRefuses) and returns the answer's status: 503 when
// storage could not admit the request. Its row counts the declared length
// as bytes in, as the row of a request whose body is over the server's
// limit does.
func (h *Relay) refuseUnread(ctx *fasthttp.RequestCtx, cfg *Config, v *verdict, d *quota.Decision) int {
	hdr := &ctx.Request.Header
	keptHeads.forget(hdr) // it will not reach the handlers (chunkedhead.go)
	rec, _, admitted := h.beginOn(ctx, cfg)
	if v.key != nil {
		v.name(rec)
	} else {
		requestKey(ctx, cfg, rec) // refused before the key was looked at
	}
	if cl := hdr.ContentLength(); cl > 0 {
		rec.BytesIn = int64(cl)
	}
	switch {
	case !admitted, d == nil && v.status == 0:
		// Without a refusal of its own the request is here because
		// storageRefuses said the storage was full; Admit may have found
		// room freed since (then the row is kept): refused all the same,
		// its client told before it uploads.
		h.refuseOverloaded(ctx, rec)
	case d != nil:
		setRateHeaders(&ctx.Response.Header, *d)
		h.refuseRate(ctx, rec, *d)
	default:
		h.reject(ctx, rec, v.status, v.errType, v.msg)
	}
	return ctx.Response.StatusCode()
}

// storageProbe is an Admission that can tell, without reserving anything,
// that Admit would refuse a row now (for chlog.Writer: when its memory
// budget has no room for another row slot).
type storageProbe interface {
	Overloaded() bool
}

// storageRefuses reports whether the storage's admission would refuse a
// request now, when it can tell without reserving a row (storageProbe).
func (h *Relay) storageRefuses() bool {
	p, ok := h.o.Admission.(storageProbe)
	return ok && p.Overloaded()
}

// earlyRate is the user value key of the limiter's decision taken for a
// request before its body was read.
type earlyRate struct{}

// takenEarly returns the decision ExpectContinue took for ctx's request.
func takenEarly(ctx *fasthttp.RequestCtx) (quota.Decision, bool) {
	d, ok := ctx.UserValue(earlyRate{}).(quota.Decision)
	return d, ok
}
