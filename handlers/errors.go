package handlers

import (
	"sync"

	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
)

var errBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// writeError sets a JSON error response: {"error":{"type":...,"message":...}}.
// The message never contains a secret: callers pass fixed texts and names.
func writeError(ctx *fasthttp.RequestCtx, status int, errType, message string) {
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	p := errBufPool.Get().(*[]byte)
	b := upstream.AppendErrorBody((*p)[:0], errType, message)
	ctx.Response.SetBody(b) // copies
	*p = b
	errBufPool.Put(p)
}
