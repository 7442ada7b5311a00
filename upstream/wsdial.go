package upstream

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// httpScheme maps a ws route's ws:// and wss:// upstream schemes to the
// http(s) schemes its handshake is sent with; others are returned as they
// are.
func httpScheme(s string) string {
	switch strings.ToLower(s) {
	case "ws":
		return "http"
	case "wss":
		return "https"
	}
	return s
}

// WSDial is the upstream end of a WebSocket session after its handshake:
// Conn on success; otherwise ErrType and Status say why, and, when the
// upstream answered the upgrade with something other than 101, Body and
// ContentType hold its answer (at most 1 KiB) to relay to the client.
type WSDial struct {
	Conn *websocket.Conn
	// Header holds the upstream's end-to-end response headers to copy to
	// the client's 101 (its subprotocol among them), or to its refusal.
	Header http.Header

	ErrType     string
	Status      int
	Body        []byte
	ContentType string
	Err         error
}

// wsSkipRequest are request headers of the client's handshake that belong
// to its own connection with the relay: the Dialer writes its own.
var wsSkipRequest = map[string]bool{
	"sec-websocket-key":        true,
	"sec-websocket-version":    true,
	"sec-websocket-extensions": true, // no compression: messages are relayed as they are read
	"sec-websocket-accept":     true,
}

// wsSkipResponse are upstream handshake response headers not copied to the
// client's 101: the relay's own handshake with the client sets them.
var wsSkipResponse = map[string]bool{
	"sec-websocket-accept":     true,
	"sec-websocket-extensions": true,
	"date":                     true,
}

// DialWS opens the upstream side of a WebSocket session for the client's
// handshake in: the route's URL (http and https become ws and wss) with the
// request's path, as an HTTP request's goes (wspath.go: a dot segment is
// refused with 400 bad_request), and query, the client's end-to-end
// headers (its subprotocols without a KeySubprotocol entry), the provider
// key in AuthHeader or, with AuthQuery, in that query parameter (a value
// the client sent for it is dropped). rec gets the handshake's request
// headers (redacted), the upstream's response headers and TTFB.
func (r *Route) DialWS(in *Request, rec *record.Record) WSDial {
	if !r.Configured() {
		var hdr fasthttp.RequestHeader
		rec.RequestHeaders = r.copyRequestHeaders(&hdr, in.Header, rec.RequestHeaders[:0])
		return WSDial{ErrType: record.ErrUpstreamConfig, Status: fasthttp.StatusBadGateway, Err: ErrNoProviderKey}
	}
	if err := r.checkWSPath(in); err != nil {
		return WSDial{ErrType: record.ErrBadRequest, Status: fasthttp.StatusBadRequest, Err: err}
	}
	slot, ok := r.takeWSConn()
	if !ok {
		// As an HTTP route whose max_conns ran out (ErrNoFreeConns).
		return WSDial{ErrType: record.ErrUpstreamConnect, Status: fasthttp.StatusServiceUnavailable, Err: ErrWSConnsFull}
	}
	out := r.dialWS(in, rec, slot)
	if out.Conn == nil {
		slot.free()
	}
	return out
}

// ErrWSConnsFull refuses a session when the route's max_conns upstream
// connections are open.
var ErrWSConnsFull = errors.New("upstream: the route's max_conns connections to the upstream are all in use")

// takeWSConn takes one of the route's MaxConns upstream connections for a
// session, or reports that none is free.
func (r *Route) takeWSConn() (*wsSlot, bool) {
	n := r.wsConns
	if n == nil {
		n = new(atomic.Int64) // a route not made by NewRoute (tests)
	}
	if n.Add(1) > int64(r.MaxConns) && r.MaxConns > 0 {
		n.Add(-1)
		return nil, false
	}
	return &wsSlot{n: n}, true
}

// wsSlot is a session's place among the route's upstream connections: freed
// once, when its connection closes (slotConn) or the dial fails.
type wsSlot struct {
	once sync.Once
	n    *atomic.Int64
}

func (s *wsSlot) free() { s.once.Do(func() { s.n.Add(-1) }) }

// slotConn is an upstream connection that frees its slot when closed.
type slotConn struct {
	net.Conn
	slot *wsSlot
}

func (c slotConn) Close() error {
	c.slot.free()
	return c.Conn.Close()
}

// dialWS is DialWS once the session has its slot.
func (r *Route) dialWS(in *Request, rec *record.Record, slot *wsSlot) WSDial {
	var hdr fasthttp.RequestHeader
	rec.RequestHeaders = r.copyRequestHeaders(&hdr, in.Header, rec.RequestHeaders[:0])
	h := make(http.Header, hdr.Len())
	var lb [64]byte
	for k, v := range hdr.All() {
		lk := lowerKey(&lb, k)
		if wsSkipRequest[string(lk)] || string(lk) == "host" {
			continue
		}
		if r.AuthQuery != "" && string(lk) == strings.ToLower(r.AuthHeader) {
			continue // the key goes in the query instead
		}
		if string(lk) == "sec-websocket-protocol" {
			if v = appendSubprotocolsWithoutKey(nil, v); len(v) == 0 {
				continue
			}
		}
		ck := textproto.CanonicalMIMEHeaderKey(string(k))
		h[ck] = append(h[ck], string(v))
	}

	var dialErr error
	var up upstreamDial // for watchClient to cut the wait for the 101
	nd := &net.Dialer{Timeout: r.ConnectTimeout}
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := nd.DialContext(ctx, network, addr)
			dialErr = err
			if err != nil {
				return nil, err
			}
			c = slotConn{Conn: c, slot: slot}
			up.dialed(c)
			return c, nil
		},
		// wss: the TLS handshake is part of the connect, as on an HTTP
		// route: within connect_timeout (it had first_byte_timeout), and a
		// failed one (a certificate that does not verify) is
		// upstream_connect (it was "closed before answering").
		NetDialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := r.dialTLS(ctx, nd, network, addr)
			dialErr = err
			if err != nil {
				return nil, err
			}
			c = slotConn{Conn: c, slot: slot}
			up.dialed(c)
			return c, nil
		},
		HandshakeTimeout: r.FirstByteTimeout,
		ReadBufferSize:   4 << 10,
		WriteBufferSize:  4 << 10,
	}
	dials := r.dials
	if dials == nil {
		dials = context.Background() // a route not made by NewRoute (tests)
	}
	ctx, left := watchClient(dials, in, up.cut)
	conn, resp, err := d.DialContext(ctx, r.wsURL(in), h)
	if gone := left(); err != nil && resp == nil && gone {
		// The client left while the upstream had not answered: the
		// connection is given up now (it was held until
		// first_byte_timeout), as an HTTP route's watchdog does.
		rec.TTFB = record.None
		return WSDial{Err: errClientLeft, ErrType: record.ErrClientClosed, Status: StatusClientClosed}
	}
	if err != nil && dials.Err() != nil && resp == nil {
		// Given up at shutdown (Clients.AbortDials): no verdict on the
		// upstream, answered 503 as an HTTP route's aborted connect is.
		rec.TTFB = record.None
		return WSDial{Err: ErrDialAborted, ErrType: record.ErrShuttingDown, Status: fasthttp.StatusServiceUnavailable}
	}
	if err != nil {
		rec.TTFB = record.None
		out := WSDial{Err: err, ErrType: record.ErrUpstreamReset, Status: fasthttp.StatusBadGateway}
		var ne net.Error
		switch {
		case resp != nil:
			// Answered, but not with an upgrade: relayed as an HTTP answer.
			rec.TTFB = time.Since(rec.Start)
			out.ErrType, out.Status = record.ErrUpstreamStatus, resp.StatusCode
			if resp.StatusCode < 400 {
				out.Status = fasthttp.StatusBadGateway
			}
			// The refusal may repeat the request (a redirect's Location,
			// an error quoting the URL or a header): the provider key is
			// masked in what the client gets and the row keeps (keymask.go).
			r.maskKeyInHeader(resp.Header)
			out.Header = endToEnd(resp.Header)
			out.ContentType = resp.Header.Get("Content-Type")
			out.Body, _ = io.ReadAll(io.LimitReader(resp.Body, maxRefusalBody))
			if len(out.Body) == maxRefusalBody {
				out.Body = r.maskKeyCut(out.Body) // cut: maybe inside the key
			} else {
				out.Body = r.maskKey(out.Body)
			}
			rec.ResponseHeaders = appendHTTPHeaderJSON(rec.ResponseHeaders[:0], resp.Header)
		case dialErr != nil:
			out.ErrType = record.ErrUpstreamConnect
			out.Err = &DialError{Err: dialErr} // the connect's own error, as an HTTP route's
			if errors.As(dialErr, &ne) && ne.Timeout() {
				out.Status = fasthttp.StatusGatewayTimeout // as an HTTP route's connect that timed out
			}
		case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
			out.ErrType, out.Status = record.ErrUpstreamTimeout, fasthttp.StatusGatewayTimeout
		}
		return out
	}
	rec.TTFB = time.Since(rec.Start)
	// An upgrade's headers may repeat the request too (a debugging header
	// echoing Authorization, a URL with auth_query's key): masked as a
	// refusal's are.
	r.maskKeyInHeader(resp.Header)
	rec.ResponseHeaders = appendHTTPHeaderJSON(rec.ResponseHeaders[:0], resp.Header)
	return WSDial{Conn: conn, Header: endToEnd(resp.Header), Status: fasthttp.StatusSwitchingProtocols}
}

// upstreamDial is the connection a WebSocket dial made, for watchClient to
// cut: the dialer reads the upstream's answer without looking at its ctx,
// and sets the connection's deadlines itself, so the connection is closed.
// A cut before the connection exists closes it as it comes.
type upstreamDial struct {
	mu    sync.Mutex
	c     net.Conn
	isCut bool
}

func (u *upstreamDial) dialed(c net.Conn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.c = c
	if u.isCut {
		_ = c.Close()
	}
}

func (u *upstreamDial) cut() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.isCut = true
	if u.c != nil {
		_ = u.c.Close()
	}
}

// clientWatchEvery is how often watchClient looks at the client.
const clientWatchEvery = 100 * time.Millisecond

// watchClient returns a context derived from parent that ends, and calls
// gone, when the client of in hangs up, looked at every clientWatchEvery
// until the returned left is called; left stops the watch and reports
// whether the client was found gone. A WebSocket client sends nothing
// before the upstream's 101 comes (RFC 6455 4.1), so a peek that finds its
// end finds it gone.
func watchClient(parent context.Context, in *Request, gone func()) (context.Context, func() bool) {
	if in.Client == nil {
		return parent, func() bool { return false }
	}
	ctx, cancel := context.WithCancel(parent)
	var left atomic.Bool
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(clientWatchEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				if parent.Err() != nil {
					// Given up (Clients.AbortDials, at shutdown): the
					// dialer does not read its ctx while it waits for
					// the 101, so the connection is closed under it.
					gone()
				}
				return
			case <-t.C:
				if clientLeft(in) {
					left.Store(true)
					cancel()
					gone()
					return
				}
			}
		}
	}()
	return ctx, func() bool {
		close(stop)
		<-done
		cancel()
		return left.Load()
	}
}

// dialTLS connects to addr and completes the TLS handshake, both within
// the route's connect_timeout from the start of the dial.
func (r *Route) dialTLS(ctx context.Context, nd *net.Dialer, network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, r.ConnectTimeout)
	defer cancel()
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	tc := tls.Client(c, &tls.Config{ServerName: host, InsecureSkipVerify: r.TLSSkipVerify}) //nolint:gosec // the route's tls_skip_verify
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return tc, nil
}

// KeySubprotocol begins the Sec-WebSocket-Protocol entry in which a
// browser, which cannot set headers on a WebSocket handshake, sends an API
// key (OpenAI's Realtime clients: "openai-insecure-api-key.<key>"). A
// client of the relay may send its relay key so (handlers'
// requestCredential);
// the relay never forwards such an entry, whatever key it holds.
const KeySubprotocol = "openai-insecure-api-key."

var keySubprotocol = []byte(KeySubprotocol)

// appendSubprotocolsWithoutKey appends to dst the comma-separated
// subprotocol list protocols without its KeySubprotocol entries (matched
// whatever their case), each trimmed and joined by ", ".
func appendSubprotocolsWithoutKey(dst, protocols []byte) []byte {
	start := len(dst)
	for rest := protocols; len(rest) > 0; {
		var p []byte
		p, rest = nextToken(rest)
		if len(p) == 0 || IsKeySubprotocol(p) {
			continue
		}
		if len(dst) > start {
			dst = append(dst, ", "...)
		}
		dst = append(dst, p...)
	}
	return dst
}

// IsKeySubprotocol reports whether the subprotocol entry p carries a key
// (begins with KeySubprotocol, whatever its case).
func IsKeySubprotocol(p []byte) bool {
	return len(p) >= len(keySubprotocol) && bytes.EqualFold(p[:len(keySubprotocol)], keySubprotocol)
}

// wsURL is the upstream URL of the client's handshake.
func (r *Route) wsURL(in *Request) string {
	b := make([]byte, 0, 64+len(r.host)+len(r.basePath)+len(in.Path)+len(in.Query))
	if string(r.scheme) == "https" {
		b = append(b, "wss://"...)
	} else {
		b = append(b, "ws://"...)
	}
	b = append(b, r.host...)
	b = append(b, r.basePath...)
	b = appendWSPath(b, in)
	b = appendQuery(b, in.Query, r.AuthQuery)
	if r.AuthQuery != "" {
		sep := byte('&')
		if indexByte(b, '?') < 0 {
			sep = '?'
		}
		b = append(b, sep)
		b = append(b, url.QueryEscape(r.AuthQuery)...)
		b = append(b, '=')
		b = append(b, url.QueryEscape(r.ProviderKey)...)
	}
	return string(b)
}

// RelayKeyParam is the query parameter in which Google's clients send an
// API key ("?key="): a client of the relay sends its relay key there
// (handlers' credential), and the relay never forwards it.
const RelayKeyParam = "key"

// appendQuery appends "?" and the client's raw query q to the request
// target b, as sent but for the relay key's parameter (RelayKeyParam) and
// the parameter named drop (a ws route's AuthQuery, "" for none). Empty
// pairs after the first pair kept stay ("a=1&&b" is forwarded so).
func appendQuery(b, q []byte, drop string) []byte {
	sep := byte('?')
	for len(q) > 0 {
		pair, more := q, false
		if i := indexByte(q, '&'); i >= 0 {
			pair, q, more = q[:i], q[i+1:], true
		} else {
			q = nil
		}
		if (len(pair) > 0 || sep == '&') && !queryKeyIs(pair, RelayKeyParam) && (drop == "" || !queryKeyIs(pair, drop)) {
			b = append(b, sep)
			b = append(b, pair...)
			sep = '&'
		}
		if more && len(q) == 0 && sep == '&' {
			b = append(b, '&') // a trailing empty pair
		}
	}
	return b
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// queryKeyIs reports whether the query pair key[=value] has the key name,
// once unescaped.
func queryKeyIs(pair []byte, name string) bool {
	k := pair
	if i := indexByte(pair, '='); i >= 0 {
		k = pair[:i]
	}
	if string(k) == name {
		return true
	}
	if indexByte(k, '%') < 0 && indexByte(k, '+') < 0 {
		return false // no escape: nothing to unescape (and no allocation)
	}
	uk, err := url.QueryUnescape(string(k))
	return err == nil && uk == name
}

// endToEnd returns the headers of an upstream handshake answer that may be
// copied to the client's answer.
func endToEnd(h http.Header) http.Header {
	out := make(http.Header, len(h))
	conn := []byte(h.Get("Connection"))
	for k, vs := range h {
		lk := strings.ToLower(k)
		if classOf([]byte(lk))&hopByHop != 0 || wsSkipResponse[lk] || !validName([]byte(k)) || listedInConnection(conn, []byte(k)) {
			continue
		}
		if lk == "x-request-id" {
			k = UpstreamRequestID // X-Request-Id is the relay's (copyResponseHeaders)
		}
		out[k] = vs
	}
	return out
}

// maxRefusalBody is how much of an upstream's refusal of a handshake is
// relayed (and kept in the row).
const maxRefusalBody = 1 << 10

// CopyWSHeader adds the upstream's handshake answer headers h (WSDial's
// Header) to the client's answer dst, as an HTTP route copies a response's:
// an upstream's X-RateLimit-* field goes as X-Upstream-RateLimit-* where
// dst has the relay's own.
func CopyWSHeader(dst *fasthttp.ResponseHeader, h http.Header) {
	for k, vs := range h {
		lk := []byte(strings.ToLower(k))
		name := []byte(k)
		switch string(lk) {
		case "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset":
			if len(dst.PeekBytes(name)) > 0 {
				name = upstreamRateLimitKey(lk)
			}
		}
		for _, v := range vs {
			dst.AddBytesK(name, v)
		}
	}
}

// appendHTTPHeaderJSON appends h, redacted, as a JSON object (names lower
// case, in order, each once: a repeated field's values joined as
// headerSet joins them).
func appendHTTPHeaderJSON(capture []byte, h http.Header) []byte {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var seen headerSet
	capture = append(capture, '{')
	for _, k := range keys {
		lk := []byte(strings.ToLower(k))
		for _, v := range h[k] {
			capture = seen.add(capture, lk, []byte(v), classOf(lk))
		}
	}
	return seen.close(capture)
}
