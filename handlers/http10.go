package handlers

import (
	"net"

	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
)

// answerHTTP10 writes s to an HTTP/1.0 client: without chunked framing,
// which such a client does not read (it would find the chunk sizes inside
// its events or its audio), the body ending with the connection, which is
// closed after it (RFC 9112 6.3). fasthttp frames every body of unknown
// length as chunked, so the answer is written apart from it, on the
// connection taken from the server, as a detached stream's is (detach.go).
// A body that came whole with the head (Prepare false) has its length and
// is not written here. An upstream's Content-Length goes with it, and a
// body cut short ends with a reset, not an ordinary close: either way the
// client can tell it from a whole one.
func (h *Relay) answerHTTP10(ctx *fasthttp.RequestCtx, rec *record.Record, s *upstream.Stream) {
	rec.KeepBorrowedBody() // the request is reset once the server lets go of it
	hdr := &ctx.Response.Header
	hdr.Del(fasthttp.HeaderTransferEncoding)
	if n := s.Length(); n >= 0 {
		// The upstream's length: a client can tell a body cut short.
		hdr.SetContentLength(int(n))
		hdr.SetConnectionClose()
	} else {
		hdr.SetContentLength(-2) // identity: no length, Connection: close
	}
	head := hdr.AppendBytes(nil)
	ctx.HijackSetNoResponse(true)
	g := guardHijack(ctx, func() { _ = s.CloseWithError(errHijackNotRun) })
	ctx.Hijack(func(c net.Conn) {
		g.done()
		_ = s.WriteClosing(head)
		_ = c.Close()
	})
}
