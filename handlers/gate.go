package handlers

import (
	"context"
	"strconv"
	"strings"

	"github.com/stream-relay/stream-relay/quota"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
)

// verdict is what gate decided about a request: the relay key it carries
// and the tenant it acts for (key nil: none, or not a configured one), and
// why it is refused (status 0: it is not).
type verdict struct {
	key     *Key
	tenant  string
	status  int
	errType string
	msg     string
}

// gate runs the checks a request on route rt passes before its upstream is
// asked, in order: the relay drains (503), the relay key (401), X-Tenant-ID
// (403), the route's methods (405), the body's length (413). bodyLen is the
// body's length, or the length a request whose body is not read yet
// declares (negative: unknown, a chunked body). Rate limits are left to the caller (takeRate). It does
// not allocate, but for the messages of a 405 and a 413.
func (h *Relay) gate(ctx *fasthttp.RequestCtx, cfg *Config, rt *upstream.Route, bodyLen int64) verdict {
	hdr := &ctx.Request.Header
	key := cfg.Keys.Lookup(requestCredential(hdr, ctx.URI().QueryString()))
	if h.draining() && !h.begunBeforeDrain(ctx) {
		// Its row names the key and tenant, as every refused request's
		// does (a tenant's refusals are counted by its rows).
		v := verdict{status: fasthttp.StatusServiceUnavailable, errType: record.ErrShuttingDown, msg: "the relay is shutting down"}
		if key != nil {
			v.key, v.tenant = key, key.Tenant
			if t := hdr.PeekBytes(hdrTenant); len(t) > 0 && key.Allows(t) {
				v.tenant = key.tenant(t)
			}
		}
		return v
	}
	if key == nil {
		return verdict{status: fasthttp.StatusUnauthorized, errType: record.ErrUnauthorized, msg: msgNoKey}
	}
	v := verdict{key: key, tenant: key.Tenant}
	if t := hdr.PeekBytes(hdrTenant); len(t) > 0 {
		if !key.Allows(t) {
			v.status, v.errType, v.msg = fasthttp.StatusForbidden, record.ErrForbidden, "X-Tenant-ID is not allowed for this relay key"
			return v
		}
		v.tenant = key.tenant(t)
	}
	if !rt.AllowsMethod(ctx.Method()) {
		// After the key: a caller without one learns nothing of the
		// route's methods. RFC 9110 asks a 405 for its Allow header.
		allow := strings.Join(rt.Methods, ", ")
		ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
		v.status, v.errType = fasthttp.StatusMethodNotAllowed, record.ErrBadRequest
		v.msg = "method " + string(ctx.Method()) + " is not relayed on this route (allowed: " + allow + ")"
		return v
	}
	if bodyLen > rt.MaxBodyBytes {
		v.status, v.errType = fasthttp.StatusRequestEntityTooLarge, record.ErrBodyTooLarge
		v.msg = "request body exceeds " + strconv.FormatInt(rt.MaxBodyBytes, 10) + " bytes"
	}
	return v
}

// requestBeginner is a client connection that knows when the read that
// began its current request came (app's edgeConn).
type requestBeginner interface {
	RequestBegan() int64
}

// begunBeforeDrain reports whether ctx's request had begun to arrive when
// the relay began to drain: its body may have been uploading for seconds
// (a long prompt, a file to transcribe), and refusing it once the body is
// whole threw that away, with shutdown_grace left to serve it. A request
// that came later, or whose connection cannot tell, is refused, and so is
// every one once the grace period is over (EndGrace).
func (h *Relay) begunBeforeDrain(ctx *fasthttp.RequestCtx) bool {
	b, ok := ctx.Conn().(requestBeginner)
	if !ok || h.graceOver.Load() {
		return false
	}
	at := b.RequestBegan()
	return at != 0 && at < h.drainedAt.Load()
}

// name names v's key and tenant in rec, when v has a key.
func (v *verdict) name(rec *record.Record) {
	if v.key != nil {
		rec.KeyID, rec.Tenant = v.key.ID, v.tenant
	}
}

// takeRate asks cfg's limiter to admit a request of rec's tenant and key,
// unless it was asked before the request's body was read (ExpectContinue),
// and sets the answer's X-RateLimit headers from the decision.
func takeRate(ctx *fasthttp.RequestCtx, cfg *Config, rec *record.Record) quota.Decision {
	d, ok := takenEarly(ctx)
	if !ok {
		// Not ctx: a *fasthttp.RequestCtx is reset and reused once the
		// request ends, and a context.WithTimeout derived from it lets the
		// timer goroutine read it (ctx.Value, via removeChild) when the
		// deadline fires, concurrently with that reset: a data race the
		// race detector caught with Redis paused (TestChaosRedisFailures).
		// The limiter bounds its own calls; RequestCtx.Done only closes at
		// server shutdown, so nothing is lost.
		d = cfg.Limiter.Take(context.Background(), rec.Tenant, rec.KeyID)
	}
	setRateHeaders(&ctx.Response.Header, d)
	return d
}

// refuseRate answers a request the limiter refused (decision d): 429 with
// Retry-After. A refusal that consulted no bucket (Redis unavailable with
// on_redis_error deny) says so: the tenant spent nothing.
func (h *Relay) refuseRate(ctx *fasthttp.RequestCtx, rec *record.Record, d quota.Decision) {
	ctx.Response.Header.Set(fasthttp.HeaderRetryAfter, strconv.FormatInt(ceilSeconds(d.RetryAfter), 10))
	msg := "rate limit exceeded (the tenant's, or this relay key's); see Retry-After"
	if d.Source == quota.SourceBypass {
		msg = "rate limiter unavailable (Redis did not answer, and rate_limit.on_redis_error is deny): refused without a limit spent; see Retry-After"
	}
	h.reject(ctx, rec, fasthttp.StatusTooManyRequests, record.ErrRateLimited, msg)
}

// msgNoKey is the message of a 401.
const msgNoKey = "missing or unknown relay key"
