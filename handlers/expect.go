package handlers

import (
	"context"
	"sync/atomic"

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
// that need no body: CheckRequest's and CheckFraming's, a declared
// Content-Length over the server's limit, a path no route has (404; but
// the paths the server answers itself, Options.OwnPaths), the drain, the relay key,
// X-Tenant-ID, a declared Content-Length over the route's limit, the
// storage's admission and the rate limit. Every other request gets 100
// Continue and goes the ordinary way.
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
// taken over by serve); when its upload then fails, the token is given
// back (earlyDecision, quota.Limiter.Refund).
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
			ctx.SetUserValue(earlyRate{}, &earlyDecision{d: d, lim: cfg.Limiter, tenant: v.tenant, keyID: v.key.ID})
			return fasthttp.StatusContinue
		}
		return h.refuseUnread(ctx, cfg, &v, &d)
	}
	return h.refuseUnread(ctx, cfg, &v, nil)
}

// screenUnread runs the checks of a request whose body is not read yet, in
// the order the request meets them without Expect: CheckRequest's and
// CheckFraming's, the server's body limit (fasthttp refuses a longer body
// whatever the path), Fiber's own routes (served: a verdict without a key
// and without a refusal lets the request go on unasked), a path no route
// has (404, as serve answers it), then the route's gate.
func (h *Relay) screenUnread(ctx *fasthttp.RequestCtx, cfg *Config) verdict {
	hdr := &ctx.Request.Header
	if status, msg := requestEdge(hdr); status != 0 { // CheckRequest's
		return verdict{status: status, errType: record.ErrBadRequest, msg: msg}
	}
	if msg := framingRefusal(hdr.RawHeaders()); msg != "" { // CheckFraming's
		return verdict{status: fasthttp.StatusBadRequest, errType: record.ErrBadRequest, msg: msg}
	}
	// -1: chunked.
	declared := int64(hdr.ContentLength())
	if h.o.BodyLimit > 0 && declared > h.o.BodyLimit { // ServerError's
		return verdict{status: fasthttp.StatusRequestEntityTooLarge, errType: record.ErrBodyTooLarge, msg: msgBodyTooLarge}
	}
	if h.ownPath(hdr.Method(), ctx.URI().PathOriginal()) {
		return verdict{}
	}
	rt := cfg.Routes.Find(ctx.Path())
	if rt == nil {
		return verdict{status: fasthttp.StatusNotFound, errType: record.ErrNotFound, msg: msgNoRoute}
	}
	return h.gate(ctx, cfg, rt, declared)
}

// msgNoRoute is the message of serve's 404, for a path no route has.
const msgNoRoute = "no route for this path"

// ownPath reports whether the server answers a request of method for path
// itself (Options.OwnPaths; the request's path as sent, as Fiber matches
// it): Fiber's matching ignores case and trailing slashes (CaseSensitive
// and StrictRouting are off). It does not allocate.
func (h *Relay) ownPath(method, path []byte) bool {
	if string(method) != fasthttp.MethodGet && string(method) != fasthttp.MethodHead {
		return false
	}
	for len(path) > 1 && path[len(path)-1] == '/' {
		path = path[:len(path)-1]
	}
	for _, p := range h.o.OwnPaths {
		if asciiEqualFold(path, p) {
			return true
		}
	}
	return false
}

// asciiEqualFold reports whether b equals s, ASCII letters compared without
// case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// refuseUnread answers and logs a request refused before its body was read
// (v's refusal, or the limiter's decision d when not nil; neither: the
// storage's, storageRefuses) and returns the answer's status: 503 when
// storage could not admit the request. Its row counts the declared length
// as bytes in, as the row of a request whose body is over the server's
// limit does.
func (h *Relay) refuseUnread(ctx *fasthttp.RequestCtx, cfg *Config, v *verdict, d *quota.Decision) int {
	hdr := &ctx.Request.Header
	dropHead(ctx) // it will not reach the handlers (kepthead.go)
	rec, _, admitted := h.beginOn(ctx, cfg)
	switch {
	case v.key != nil:
		v.name(rec)
	case v.errType != record.ErrNotFound || admitted:
		// Refused before the key was looked at; a 404 names the key, as
		// serve's does (a 404 the storage refused names none there).
		requestKey(ctx, cfg, rec)
	}
	if cl := hdr.ContentLength(); cl > 0 {
		rec.BytesIn, rec.BytesInDeclared = int64(cl), true
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
// request before its body was read (an *earlyDecision).
type earlyRate struct{}

// earlyDecision is the limiter's admission of a request taken before its
// body was read, kept as the request's user value until serve takes it
// over (takenEarly). fasthttp closes a user value that is an io.Closer
// when it resets the request, after the request's answer, or without one
// when the connection broke: a decision serve did not take over is then
// given back to the limiter that took it (refunder). That is a request
// whose upload failed (the client left or sent a short body; fasthttp ran
// no handler), or one serve refused before it asks the limiter (storage,
// or a reload's route, key or drain since), which without Expect would
// have taken no token either.
type earlyDecision struct {
	d             quota.Decision
	lim           Limiter
	tenant, keyID string
	taken         atomic.Bool // serve took the decision over, or it was given back
}

// Close gives the decision's token back unless serve took it over.
func (e *earlyDecision) Close() error {
	if !e.taken.CompareAndSwap(false, true) {
		return nil
	}
	if r, ok := e.lim.(refunder); ok {
		r.Refund(e.tenant, e.keyID, e.d)
	}
	return nil
}

// refunder is a Limiter that can give back the token of an admission
// whose request was not served (quota.Limiter.Refund).
type refunder interface {
	Refund(tenant, keyID string, d quota.Decision)
}

// takenEarly returns the decision ExpectContinue took for ctx's request;
// from then on it is the request's, not given back.
func takenEarly(ctx *fasthttp.RequestCtx) (quota.Decision, bool) {
	e, ok := ctx.UserValue(earlyRate{}).(*earlyDecision)
	if !ok {
		return quota.Decision{}, false
	}
	e.taken.Store(true)
	return e.d, true
}
