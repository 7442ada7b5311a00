package handlers

import (
	"strings"

	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
)

// refuseMethod answers 405 to a request whose method its route does not
// relay (the route's methods), with the Allow header RFC 9110 asks for,
// after the relay key was checked: a caller without a key learns nothing
// of the route's methods.
func (h *Relay) refuseMethod(ctx *fasthttp.RequestCtx, rec *record.Record, rt *upstream.Route) {
	allow := strings.Join(rt.Methods, ", ")
	ctx.Response.Header.Set(fasthttp.HeaderAllow, allow)
	h.reject(ctx, rec, fasthttp.StatusMethodNotAllowed, record.ErrBadRequest,
		"method "+string(ctx.Method())+" is not relayed on this route (allowed: "+allow+")")
}
