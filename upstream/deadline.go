package upstream

import "time"

// The server gives every answer a write timeout (app: server.idle_timeout),
// so that a client that takes nothing cannot hold a connection, its
// goroutine and the kernel's send buffer for ever. A stream may rightly
// take longer than that to write: its writes are bounded by the watchdog
// instead, each by the route's idle_timeout, and the stream tells fasthttp
// so by setting the connection's write deadline itself (a deadline set by
// the handler replaces the server's; fasthttp clears it after the
// response).

// ownWrites takes the stream's writes out of the server's write timeout:
// no deadline while the watchdog watches them.
func (s *Stream) ownWrites() {
	if s.rctx != nil {
		_ = s.rctx.SetWriteDeadline(time.Time{})
	}
}

// boundLastFlush gives the flush fasthttp makes after WriteTo (the last
// chunk, framed into its buffer, with the terminating one; the whole
// answer when it came at once) a deadline of the route's idle_timeout.
// The stream has left the watchdog by then (CloseWithError runs first),
// so a client that stops reading just then held the connection and the
// server's goroutine for as long as it stayed connected. A detached
// stream bounds its own last flush (hijacked.go).
func (s *Stream) boundLastFlush() {
	if s.rctx != nil && s.route.IdleTimeout > 0 {
		_ = s.rctx.SetWriteDeadline(time.Now().Add(s.route.IdleTimeout))
	}
}
