package handlers

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/valyala/fasthttp"
)

// A request whose body fasthttp fails to read after its header block was
// read whole (a body that does not arrive within read_timeout: 408; a
// chunked body that outgrows the body limit: 413; chunks that break their
// framing: 400) is reset by fasthttp (Request.ReadBody) before the server's
// error handler runs: without more, the answer had no X-Request-Id and the
// request no row, while the same request refused before its body is read
// has both. The client connection keeps the bytes of the read that began
// its current request (app's edgeConn) until the request reaches a
// handler; when they hold the whole header block, the error handler gives
// the request its head back and logs it as a request. (A copy of every
// chunked request's header, kept in a map until a sweep ten minutes on,
// did this before: a client that broke off chunked uploads made it hold
// hundreds of megabytes.)

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

// restoreKeptHead gives ctx's request back the head its connection kept,
// when err is a failure to read its body (bodyReadFailed, bodyCutShort, or
// a timeout that is not the header block's: fasthttp's header read errors
// carry headerReadError) and the kept read holds the whole header block; it
// reports whether it did. The kept head is dropped either way.
func restoreKeptHead(ctx *fasthttp.RequestCtx, err error) bool {
	k, ok := ctx.Conn().(headKeeper)
	if !ok {
		return false
	}
	defer k.DropHead()
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout() && !strings.HasPrefix(err.Error(), headerReadError)
	if !timedOut && !bodyReadFailed(err) && !bodyCutShort(err) {
		return false
	}
	raw := k.KeptHead()
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	if end < 0 || len(ctx.Request.Header.RawHeaders()) != 0 {
		return false
	}
	return restoreHead(&ctx.Request, raw[:end+4])
}

// bodyCutShort reports whether err says that the client's connection ended
// (closed, half-closed or reset) inside a request body: fasthttp returns
// io.ErrUnexpectedEOF, or the socket's error, as they are for a body, and
// prefixes every header block's read error with headerReadError.
func bodyCutShort(err error) bool {
	if strings.HasPrefix(err.Error(), headerReadError) {
		return false
	}
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || (errors.As(err, &ne) && !ne.Timeout())
}
