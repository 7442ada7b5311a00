package app

import (
	"time"

	"github.com/valyala/fasthttp"
)

// fasthttp sets a connection's write deadline (the server's WriteTimeout,
// server.idle_timeout) before it writes each answer, and leaves it. Two
// writes of the next request on a kept connection come before that
// request's own: the "100 Continue" line, and fasthttp's answer to a
// request whose body it could not read (413, 400, 408). Under the last
// answer's deadline, which may have passed while the connection idled and
// the body came, they failed and the connection closed without a word.
// These wrappers give them a deadline of their own.

// freshWriteDeadline wraps the server's ExpectHandler: the "100 Continue"
// it may allow is written within d from now.
func freshWriteDeadline(next func(*fasthttp.RequestCtx) int, d time.Duration) func(*fasthttp.RequestCtx) int {
	return func(ctx *fasthttp.RequestCtx) int {
		_ = ctx.Conn().SetWriteDeadline(time.Now().Add(d))
		return next(ctx)
	}
}

// freshErrorDeadline wraps the server's ErrorHandler: its answer is
// written within d from now.
func freshErrorDeadline(next func(*fasthttp.RequestCtx, error), d time.Duration) func(*fasthttp.RequestCtx, error) {
	return func(ctx *fasthttp.RequestCtx, err error) {
		_ = ctx.Conn().SetWriteDeadline(time.Now().Add(d))
		next(ctx, err)
	}
}
