package handlers

import (
	"bytes"
	"errors"
	"net"
	"strings"

	"github.com/valyala/fasthttp"
)

// A request whose body does not arrive within read_timeout is answered 408
// by the server's error handler, after fasthttp reset it (Request.ReadBody
// resets a request whose body it failed to read): without more, the answer
// had no X-Request-Id and the request no row. The client connection keeps
// the bytes of the read that began its current request (app's edgeConn)
// until the request reaches a handler; when they hold the whole header
// block, the 408 gets the request's head back and is logged as a request.

// headKeeper is a client connection that keeps the read that began its
// current request (app's edgeConn).
type headKeeper interface {
	// KeptHead returns those bytes, or nil; valid until DropHead.
	KeptHead() []byte
	// DropHead lets them go.
	DropHead()
}

// dropHead lets go of the head ctx's connection kept for its request: the
// request was read whole.
func dropHead(ctx *fasthttp.RequestCtx) {
	if k, ok := ctx.Conn().(headKeeper); ok {
		k.DropHead()
	}
}

// restoreSlowBodyHead gives ctx's request back the head its connection
// kept, when err is the timeout of reading its body (not of its header
// block: fasthttp's header read errors carry headerReadError) and the kept
// read holds the whole header block; it reports whether it did. The kept
// head is dropped either way.
func restoreSlowBodyHead(ctx *fasthttp.RequestCtx, err error) bool {
	k, ok := ctx.Conn().(headKeeper)
	if !ok {
		return false
	}
	defer k.DropHead()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || strings.HasPrefix(err.Error(), headerReadError) {
		return false
	}
	raw := k.KeptHead()
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 || len(ctx.Request.Header.RawHeaders()) != 0 {
		return false
	}
	return restoreHead(&ctx.Request, raw[:end+4])
}
