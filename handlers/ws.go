package handlers

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
)

// WebSocket routes (kind ws). A request on such a route has passed the
// relay's checks as any other (relay key, tenant, rate limit: one token per
// session, taken at the handshake; storage admission); then serveWS
//  1. checks it is a WebSocket upgrade (426 otherwise, 400 when malformed),
//  2. opens the upstream session (upstream.Route.DialWS): a refusal is
//     relayed as the upstream answered it, a failure is 502/504,
//  3. answers the client 101 with the upstream's subprotocol and
//     end-to-end headers, and
//  4. relays the session (upstream.Tunnel) on the hijacked connection.
//
// The session's row: status 101, ttfb_ms the upstream handshake, ttft_ms
// from the first client message to the first upstream message after it,
// every frame in response_chunks behind its direction and type (see
// record.AddMessage), bytes_in/bytes_out the payload bytes each way, and
// the close in response_headers (":ws-close-code", ":ws-close-reason",
// ":ws-closed-by"), tokens summed over Realtime response.done events.

// wsUpgrader answers the client's handshake. Origin is not checked: the
// relay key is never ambient (no cookie), so a cross-site page can only
// send one it knows: in a header, which it cannot set on a WebSocket, or as
// a subprotocol entry (requestCredential), which it can, but then the key
// is its own and the page could as well use it from anywhere.
var wsUpgrader = websocket.FastHTTPUpgrader{
	ReadBufferSize:  4 << 10,
	WriteBufferSize: 4 << 10,
	CheckOrigin:     func(*fasthttp.RequestCtx) bool { return true },
}

// hijackGuard bounds the wait for fasthttp to hand over an upgraded
// connection on a client connection that cannot tell when the server
// closed it (serveWS's giveUp): fasthttp does not when writing the 101
// fails, and the session is then given up (client_closed) so its upstream
// and row are not left open.
const hijackGuard = 10 * time.Second

// wsSessions are the open WebSocket sessions, for Drain.
type wsSessions struct {
	mu   sync.Mutex
	open map[*upstream.Tunnel]struct{}
	shut bool
}

func (s *wsSessions) add(t *upstream.Tunnel) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shut {
		return false
	}
	if s.open == nil {
		s.open = map[*upstream.Tunnel]struct{}{}
	}
	s.open[t] = struct{}{}
	return true
}

func (s *wsSessions) remove(t *upstream.Tunnel) {
	s.mu.Lock()
	delete(s.open, t)
	s.mu.Unlock()
}

// closeAll ends every open session (1001, shutting_down) and refuses new
// ones: a WebSocket session may last far longer than the shutdown grace,
// so sessions are told at once and their clients may reconnect elsewhere.
func (s *wsSessions) closeAll() {
	s.mu.Lock()
	s.shut = true
	open := make([]*upstream.Tunnel, 0, len(s.open))
	for t := range s.open {
		open = append(open, t)
	}
	s.mu.Unlock()
	for _, t := range open {
		t.Close("relay shutting down", record.ErrShuttingDown)
	}
}

var (
	hdrUpgrade   = []byte("Upgrade")
	hdrWSKey     = []byte("Sec-WebSocket-Key")
	hdrWSVersion = []byte("Sec-WebSocket-Version")
	hdrWSProto   = []byte("Sec-WebSocket-Protocol")
	valWebSocket = []byte("websocket")
)

// refuseBadHandshake answers a request on a ws route that is no WebSocket
// handshake the relay can relay, and reports whether it did. It runs
// before the rate limit: a refusal that needs no upstream takes no token.
func (h *Relay) refuseBadHandshake(ctx *fasthttp.RequestCtx, rec *record.Record, rt *upstream.Route) bool {
	hdr := &ctx.Request.Header
	if !ctx.IsGet() || !websocket.FastHTTPIsWebSocketUpgrade(ctx) {
		ctx.Response.Header.SetBytesKV(hdrUpgrade, valWebSocket)
		h.reject(ctx, rec, fasthttp.StatusUpgradeRequired, record.ErrBadRequest,
			"route "+rt.Name+" is a WebSocket route: send a GET with Upgrade: websocket")
		return true
	}
	if string(hdr.PeekBytes(hdrWSVersion)) != "13" || len(hdr.PeekBytes(hdrWSKey)) == 0 {
		ctx.Response.Header.SetBytesKV(hdrWSVersion, []byte("13"))
		h.reject(ctx, rec, fasthttp.StatusBadRequest, record.ErrBadRequest,
			"WebSocket handshake needs Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key")
		return true
	}
	if !hdr.IsHTTP11() || hdr.ConnectionClose() {
		// fasthttp ends such a connection after the answer instead of
		// handing it over: the 101 went out, the session was cut at once
		// (its upstream dialed and dropped, a token taken) and stored as
		// the client's 499. RFC 6455 4.1 asks for HTTP/1.1 anyway.
		h.reject(ctx, rec, fasthttp.StatusBadRequest, record.ErrBadRequest,
			"WebSocket handshake must be HTTP/1.1 and keep its connection (no Connection: close)")
		return true
	}
	return false
}

// serveWS serves an admitted, authorized request on a ws route (see above)
// whose handshake refuseBadHandshake let through.
func (h *Relay) serveWS(ctx *fasthttp.RequestCtx, rec *record.Record, rt *upstream.Route) {
	hdr := &ctx.Request.Header
	rec.Model = wsModel(ctx.QueryArgs())
	in := upstream.Request{
		Ctx:    ctx,
		Header: hdr,
		Method: ctx.Method(),
		Path:   ctx.Path(),
		Query:  ctx.URI().QueryString(),
		Client: ctx.Conn(),
	}
	d := rt.DialWS(&in, rec)
	if d.Conn == nil {
		h.refuseWS(ctx, rec, rt, &d)
		return
	}
	resp := &ctx.Response.Header
	upstream.CopyWSHeader(resp, d.Header)
	if p := d.Header.Get("Sec-WebSocket-Protocol"); p != "" {
		resp.SetBytesKV(hdrWSProto, []byte(p))
	}
	rec.Status = fasthttp.StatusSwitchingProtocols

	if t, ok := ctx.Conn().(tunneled); ok {
		t.Tunneled() // no request starts on it any more
	}
	var claimed atomic.Bool
	var guard *time.Timer
	// giveUp ends a session whose hijack handler fasthttp did not run:
	// writing the 101 failed (a client that reset the connection right
	// after its handshake). It runs when the server closes the connection
	// (guardHijack), or after hijackGuard on a connection that cannot
	// guard: the upstream session (and its max_conns slot) is not held,
	// and the row says the client left before it got the 101.
	giveUp := func() {
		if !claimed.CompareAndSwap(false, true) {
			return
		}
		_ = d.Conn.Close()
		rec.Status, rec.ErrorType = upstream.StatusClientClosed, record.ErrClientClosed
		h.finish(rec)
	}
	g := guardHijack(ctx, giveUp)
	err := wsUpgrader.Upgrade(ctx, func(client *websocket.Conn) {
		g.done()
		// The server keeps hijacked connections open (detach.go): the
		// session's end closes it.
		defer client.NetConn().Close()
		if !claimed.CompareAndSwap(false, true) {
			return // given up by the guard
		}
		guard.Stop()
		t := upstream.NewTunnel(rt, rec, client, d.Conn)
		if h.ws.add(t) {
			t.Run()
			h.ws.remove(t)
		} else {
			t.Close("relay shutting down", record.ErrShuttingDown)
			t.Run()
		}
		h.finish(rec)
	})
	if err != nil {
		// Not expected: the handshake was checked above.
		g.done()
		_ = d.Conn.Close()
		rec.Status = ctx.Response.StatusCode()
		rec.ErrorType = record.ErrBadRequest
		rec.Duration = time.Since(rec.Start)
		h.finish(rec)
		return
	}
	guard = time.AfterFunc(hijackGuard, giveUp)
}

// refuseWS answers a handshake the upstream refused or that failed, or
// whose path the relay refused (400 bad_request, upstream.ErrDotSegment).
func (h *Relay) refuseWS(ctx *fasthttp.RequestCtx, rec *record.Record, rt *upstream.Route, d *upstream.WSDial) {
	if d.ErrType != record.ErrUpstreamStatus {
		h.openErrs.log(h.log, rec, d.ErrType, d.Err)
		h.reject(ctx, rec, d.Status, d.ErrType, openErrorMessage(d.ErrType, rt, d.Err))
		return
	}
	// The upstream's answer, relayed as it came (as an HTTP route relays a
	// 4xx/5xx).
	upstream.CopyWSHeader(&ctx.Response.Header, d.Header)
	ctx.SetStatusCode(d.Status)
	if d.ContentType != "" {
		ctx.SetContentType(d.ContentType)
	}
	ctx.SetBody(d.Body)
	if len(d.Body) > 0 {
		// The row keeps the answer the client got, as an HTTP route's
		// row keeps an upstream's 4xx/5xx body.
		rec.AddChunk(d.Body, time.Since(rec.Start))
	}
	rec.Status = d.Status
	rec.ErrorType = d.ErrType
	rec.Duration = time.Since(rec.Start)
	h.finish(rec)
}

// wsModel is the model a session names in its query (OpenAI Realtime's
// ?model=, ElevenLabs' ?model_id=), or "".
func wsModel(q *fasthttp.Args) string {
	if m := q.Peek("model"); len(m) > 0 {
		return string(m)
	}
	return string(q.Peek("model_id"))
}

// tunneled is a client connection that checks the start of each request
// (the relay's listener); Tunneled tells it that the connection now carries
// a WebSocket session, read and written from two goroutines, with no
// requests to check.
type tunneled interface{ Tunneled() }
