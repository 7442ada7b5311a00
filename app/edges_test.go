package app

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
	"go.uber.org/goleak"
)

// The HTTP/1.1 edges of issue 13 (found with slowhttptest, smuggler and a
// malformed-request script). Each case names nginx's answer to the same
// bytes: nginx 1.22.1 from this machine (/usr/sbin/nginx) proxying to a
// local echo server, default settings, probed with the same raw requests.

// edgeAnswer is what the relay sent back on one raw connection.
type edgeAnswer struct {
	resp    string
	closed  bool // the relay ended the connection (EOF) within the deadline
	elapsed time.Duration
}

func (a edgeAnswer) status() int { return statusOf(a.resp) }

func (a edgeAnswer) header(name string) string {
	head, _, _ := strings.Cut(a.resp, "\r\n\r\n")
	for _, l := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// errorType returns the type of the relay's JSON error in the last
// response on the connection, "" when there is none.
func (a edgeAnswer) errorType() string {
	i := strings.LastIndex(a.resp, "\r\n\r\n")
	var e struct {
		Error struct{ Type, Message string }
	}
	if i < 0 || json.Unmarshal([]byte(a.resp[i+4:]), &e) != nil {
		return ""
	}
	return e.Error.Type
}

// edgeSend writes each part of req on one new connection to addr (a pause
// between parts, so that each is read on its own) and reads until the relay
// closes the connection or d passes.
func edgeSend(t *testing.T, addr string, d time.Duration, parts ...string) edgeAnswer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(start.Add(d))
	for i, p := range parts {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		if _, err := io.WriteString(c, p); err != nil {
			break
		}
	}
	b, err := io.ReadAll(c)
	return edgeAnswer{resp: string(b), closed: err == nil, elapsed: time.Since(start)}
}

// clientHello returns the first TLS record crypto/tls sends: a real
// ClientHello.
func clientHello(t *testing.T) string {
	t.Helper()
	cli, srv := net.Pipe()
	go func() {
		_ = tls.Client(cli, &tls.Config{ServerName: "relay.test"}).Handshake()
	}()
	defer cli.Close()
	defer srv.Close()
	_ = srv.SetDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(srv, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(srv, body); err != nil {
		t.Fatal(err)
	}
	if hdr[0] != 0x16 {
		t.Fatalf("not a handshake record: %x", hdr)
	}
	return string(hdr) + string(body)
}

// TestChaosEdgesAnsweredAtOnce: requests fasthttp used to wait on until
// read_timeout (30s) and then answer 408 get a JSON 400 at once and a
// close; they reach no upstream and make no row (there is no request).
func TestChaosEdgesAnsweredAtOnce(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	r := startRelay(t, "")
	addr := strings.TrimPrefix(r.base, "http://")
	ok := "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"
	tests := []struct {
		name    string
		parts   []string
		nginx   string
		answers int // responses expected, when not one a part
	}{
		{"bare LF everywhere", []string{"GET /healthz HTTP/1.1\nHost: relay\n\n"},
			"nginx accepts bare LF: 200, kept open", 0},
		{"bare LF after the request line", []string{"GET /healthz HTTP/1.1\nHost: relay\r\n\r\n"},
			"nginx: 200, kept open (fasthttp served it too)", 0},
		{"bare LF ending the headers", []string{"GET /healthz HTTP/1.1\r\nHost: relay\n\n"},
			"nginx: 200, kept open", 0},
		{"bare LF POST with a body", []string{"POST /v1/chat/completions HTTP/1.1\nHost: relay\nContent-Length: 2\n\n{}"},
			"nginx: proxies it", 0},
		{"TLS ClientHello on the plain port", []string{clientHello(t)},
			"nginx: 400 Bad Request (HTML), closed", 0},
		{"binary bytes, no line end", []string{"\x00\x01\x02\x03binary"},
			"nginx: 400 Bad Request, closed, at once", 0},
		{"keep-alive, then bare LF", []string{ok, "GET /healthz HTTP/1.1\nHost: relay\n\n"},
			"nginx: 200 then 200, kept open", 0},
		{"keep-alive, then bare LF request line", []string{ok, "GET /healthz HTTP/1.1\nHost: relay\r\n\r\n"},
			"nginx: 200 then 200, kept open", 0},
		// The requests before the refused one are served first (the whole
		// read was refused, the good request unanswered).
		{"pipelined, second with bare LFs", []string{ok + "GET /healthz HTTP/1.1\nHost: relay\n\n"},
			"nginx: 200 then 200, kept open", 2},
		{"pipelined POST, then bare LFs", []string{"POST /healthz HTTP/1.1\r\nHost: relay\r\nContent-Length: 4\r\n\r\n\n\n\n\n" +
			"GET /healthz HTTP/1.1\nHost: relay\n\n"}, "nginx: 200 for the POST, nothing for the GET within 3s", 2},
		// A chunked body is followed too: the request line behind it
		// ending in a bare LF was served.
		{"pipelined chunked POST, then bare LF request line", []string{"POST /healthz HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5\r\nhello\r\n0\r\n\r\nGET /healthz HTTP/1.1\nHost: relay\r\n\r\n"}, "nginx: 200 then 200", 2},
	}
	before := r.mock.Count()
	var sent, expected, unexpected int64
	for _, tt := range tests {
		sent += int64(len(tt.parts))
		passed := t.Run(tt.name, func(t *testing.T) {
			a := edgeSend(t, addr, 10*time.Second, tt.parts...)
			t.Logf("relay: %d in %v, closed %v; %s", a.status(), a.elapsed.Round(time.Millisecond), a.closed, tt.nginx)
			if !a.closed {
				t.Fatalf("connection not closed within 10s (read_timeout is 30s): %.200q", a.resp)
			}
			answers := tt.answers
			if answers == 0 {
				answers = len(tt.parts)
			}
			if strings.Count(a.resp, "HTTP/1.1 ") != answers {
				t.Errorf("%d responses, want %d: %.400q", strings.Count(a.resp, "HTTP/1.1 "), answers, a.resp)
			}
			if i := strings.LastIndex(a.resp, "HTTP/1.1 "); i < 0 || statusOf(a.resp[i:]) != 400 {
				t.Errorf("last status is not 400: %.400q", a.resp)
			}
			last := edgeAnswer{resp: a.resp[max(strings.LastIndex(a.resp, "HTTP/1.1 "), 0):]}
			if last.errorType() != record.ErrBadRequest || last.header("Connection") != "close" {
				t.Errorf("want the JSON error and Connection: close: %.400q", a.resp)
			}
		})
		if passed {
			expected++
		} else {
			unexpected++
		}
	}
	if n := r.mock.Count(); n != before {
		t.Errorf("%d refused requests reached the upstream", n-before)
	}
	if !servedOK(t, r) {
		t.Error("ordinary request failed after the refused ones")
	}
	// Three rows: the served request's and the two POSTs' to /healthz
	// served before a refused request pipelined behind them (404: GET
	// /healthz makes no row); the refused ones never got as far as a
	// request.
	waitFor(t, 5*time.Second, func() bool { return r.rows.count(nil) >= 3 }, "no rows for the served requests")
	time.Sleep(100 * time.Millisecond)
	if n := r.rows.count(nil); n != 3 {
		t.Errorf("%d rows, want 3 (the served requests): %+v", n, r.rows.all())
		unexpected++
	}
	r.stop(t)
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	sinkOnly(chaosResult{scenario: "client/http-edges-at-once", sent: sent, answered: sent, expected: expected,
		unexpect: unexpected, stored: r.rows.count(nil), leaks: lk}).emit(t)
}

// TestChaosEdgesRefused: requests fasthttp parses but Fiber or fasthttp
// would serve wrongly are refused with the relay's JSON error, an
// X-Request-Id and a row, and the connection is closed.
func TestChaosEdgesRefused(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	r := startRelay(t, "")
	addr := strings.TrimPrefix(r.base, "http://")
	tests := []struct {
		name   string
		parts  []string
		status int
		method string
		nginx  string
	}{
		{"HTTP/3.0", []string{"GET /healthz HTTP/3.0\r\nHost: relay\r\n\r\n"}, 505, "GET",
			"nginx: 505 HTTP Version Not Supported, closed"},
		{"HTTP/2.0", []string{"POST /v1/chat/completions HTTP/2.0\r\nHost: relay\r\nContent-Length: 2\r\n\r\n{}"}, 505, "POST",
			"nginx: 505, closed"},
		{"HTTP/0.9", []string{"GET /healthz HTTP/0.9\r\nHost: relay\r\n\r\n"}, 505, "GET",
			"nginx: 400, closed (505 is RFC 9110's answer to an unsupported major version)"},
		{"unknown method", []string{"FOO /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"}, 400, "FOO",
			"nginx proxies FOO upstream; Fiber routes no such method"},
		{"lowercase method", []string{"get /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"}, 400, "get",
			"nginx: 400, closed"},
		{"lowercase post on a route", []string{"post /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nContent-Length: 2\r\n\r\n{}"}, 400, "post",
			"nginx: 400, closed"},
		{"WebDAV method on a route", []string{"PROPFIND /v1/chat/completions HTTP/1.1\r\nHost: relay\r\n\r\n"}, 400, "PROPFIND",
			"nginx proxies it"},
		{"bare LF header in a later read of the head", []string{"GET /healthz HTTP/1.1\r\nHost: relay\r\n", "X-A: 1\nX-B: 2\r\n\r\n"}, 400, "GET",
			"nginx: 200, kept open"},
		// fasthttp reads it as a request without a body: what follows was
		// served as a second request (smuggled past a front proxy that
		// frames to the connection's end).
		{"Transfer-Encoding identity", []string{"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
			"\r\nTransfer-Encoding: identity\r\n\r\nPOST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
			"\r\nContent-Length: 2\r\n\r\n{}"}, 400, "POST", "RFC 9112 6.3: 400, closed"},
		{"Transfer-Encoding IDENTITY", []string{"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nTransfer-Encoding: IDENTITY\r\n\r\n" +
			"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"}, 400, "POST", "RFC 9112 6.3: 400, closed"},
		// Framed by the length, "abc" was read as a chunk size: the
		// refusal came at read_timeout, a 408.
		{"Transfer-Encoding and Content-Length, a body by the length", []string{"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
			"\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"}, 400, "POST", "RFC 9112 6.1: 400, closed"},
		// obs-fold (RFC 9112 5.2): fasthttp joined the lines, and a proxy in
		// front that does not reads an empty Content-Length or
		// Authorization, or a field of its own, there. Served before.
		{"folded Content-Length", []string{"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
			"\r\nContent-Length:\r\n 2\r\n\r\n{}"}, 400, "POST", "nginx: 400, closed"},
		{"folded Authorization", []string{"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer\r\n\t" + relayKey +
			"\r\nContent-Length: 2\r\n\r\n{}"}, 400, "POST", "nginx: 400, closed"},
		// A credential's line folded onto another field: fasthttp joined
		// it into X-Foo's value, and the row stored the key there.
		{"a credential on a continuation line", []string{"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nX-Foo: 1\r\n Authorization: Bearer " + relayKey +
			"\r\nContent-Length: 2\r\n\r\n{}"}, 400, "POST", "nginx: 400, closed"},
		{"an API key on a tab continuation line, head too large", []string{"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nX-Foo: 1\r\n\tX-Api-Key: " + relayKey +
			"\r\nX-Pad: " + strings.Repeat("p", 9000) + "\r\nContent-Length: 2\r\n\r\n{}"}, 431, "POST", "nginx: 400, closed"},
		// The gate judged the first, the row stored both.
		{"X-Tenant-ID twice", []string{"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
			"\r\nX-Tenant-ID: other\r\nx-tenant-id: test-tenant\r\nContent-Length: 2\r\n\r\n{}"}, 400, "POST", "nginx: proxies both"},
		// fasthttp keeps the last: the upstream got no Content-Type.
		{"Content-Type twice", []string{"POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
			"\r\nContent-Type: application/json\r\nContent-Type:\r\nContent-Length: 2\r\n\r\n{}"}, 400, "POST", "nginx: proxies both"},
	}
	before := r.mock.Count()
	var expected, unexpected int64
	for _, tt := range tests {
		passed := t.Run(tt.name, func(t *testing.T) {
			a := edgeSend(t, addr, 10*time.Second, tt.parts...)
			t.Logf("relay: %d in %v, closed %v; %s", a.status(), a.elapsed.Round(time.Millisecond), a.closed, tt.nginx)
			if !a.closed {
				t.Fatalf("connection not closed within 10s: %.300q", a.resp)
			}
			last := a.resp[max(strings.LastIndex(a.resp, "HTTP/1.1 "), 0):]
			la := edgeAnswer{resp: last}
			if la.status() != tt.status || la.errorType() != record.ErrBadRequest || la.header("Connection") != "close" {
				t.Fatalf("want %d with the JSON error and Connection: close: %.400q", tt.status, a.resp)
			}
			id := la.header("X-Request-Id")
			if len(id) != record.IDLen {
				t.Fatalf("no X-Request-Id: %.400q", a.resp)
			}
			row := r.rows.wait(t, id)
			if row.Status != tt.status || row.ErrorType != record.ErrBadRequest || row.Method != tt.method {
				t.Errorf("row %d %q %q, want %d bad_request %q", row.Status, row.ErrorType, row.Method, tt.status, tt.method)
			}
			if strings.Contains(row.ReqHeaders, relayKey[4:]) {
				t.Errorf("the row stores the relay key: %.300s", row.ReqHeaders)
			}
		})
		if passed {
			expected++
		} else {
			unexpected++
		}
	}
	if n := r.mock.Count(); n != before {
		t.Errorf("%d refused requests reached the upstream", n-before)
	}
	// What is still served: HTTP/1.0 (closed after, as nginx does) and an
	// unknown 1.x minor as 1.1 (nginx: 200, kept open; fasthttp closes it
	// after the response, as it does for any version but HTTP/1.1).
	for _, v := range []string{"HTTP/1.0", "HTTP/1.2"} {
		a := edgeSend(t, addr, 10*time.Second, "GET /healthz "+v+"\r\nHost: relay\r\n\r\n")
		if a.status() != 200 {
			t.Errorf("%s: %.300q", v, a.resp)
			unexpected++
		}
	}
	if !servedOK(t, r) {
		t.Error("ordinary request failed after the refused ones")
		unexpected++
	}
	r.stop(t)
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	n := int64(len(tests)) + 3
	sinkOnly(chaosResult{scenario: "client/http-edges-refused", sent: n, answered: n, expected: expected,
		unexpect: unexpected, stored: r.rows.count(nil), leaks: lk}).emit(t)
}

// TestEdgesUnderscoreHeaders: header names with "_" are dropped before the
// upstream (nginx's underscores_in_headers off: nginx drops them too),
// kept in the row's captured headers, and forwarded when
// server.underscores_in_headers is true, but for those that spell a
// hop-by-hop or relay-only field with "_" for "-" (Transfer_Encoding,
// X_Tenant_Id, X_Api_Key: a CGI-style server reads them as those). One
// that spells a credential's name (X_Api_Key with the relay key) is
// redacted in the row.
func TestEdgesUnderscoreHeaders(t *testing.T) {
	send := func(t *testing.T, r *relay) (http.Header, row) {
		t.Helper()
		resp := r.post(t, "/v1/chat/completions", `{"model":"m"}`, map[string]string{
			"Transfer_encoding": "chunked", "X_Tenant_Id": "other", "X-Plain": "1", "X_Custom": "2", "X_Api_Key": relayKey,
		})
		body := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		rw := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		reqs := r.mock.Requests()
		if len(reqs) == 0 {
			t.Fatal("no request reached the mock")
		}
		return reqs[len(reqs)-1].Header, rw
	}
	underscored := func(h http.Header) []string {
		var out []string
		for k := range h {
			if strings.Contains(k, "_") {
				out = append(out, k)
			}
		}
		return out
	}
	t.Run("default: dropped", func(t *testing.T) {
		r := startRelay(t, "")
		h, rw := send(t, r)
		if u := underscored(h); len(u) != 0 || h.Get("X-Plain") != "1" {
			t.Errorf("upstream got %v (X-Plain %q)", u, h.Get("X-Plain"))
		}
		if !strings.Contains(rw.ReqHeaders, `"transfer_encoding":"chunked"`) || !strings.Contains(rw.ReqHeaders, `"x_api_key":"[redacted]"`) ||
			strings.Contains(rw.ReqHeaders, relayKey) {
			t.Errorf("row headers lack the dropped header or hold the relay key: %s", rw.ReqHeaders)
		}
		if rw.Tenant != "test-tenant" {
			t.Errorf("X_Tenant_Id chose tenant %q", rw.Tenant)
		}
	})
	t.Run("underscores_in_headers: true", func(t *testing.T) {
		r := startRelayYAML(t, func(y string) string {
			return strings.Replace(y, "server:\n", "server:\n  underscores_in_headers: true\n", 1)
		}, nil)
		h, _ := send(t, r)
		if u := underscored(h); len(u) != 1 || h.Get("X_custom") != "2" {
			t.Errorf("upstream got underscored headers %v, want X_custom alone", u)
		}
	})
}

// startTLSRelay starts the relay on its own TLS listener (a.Listen with
// server.tls_cert) in front of a mock upstream.
func startTLSRelay(t *testing.T) (r *relay, addr string, pool *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	mock, mockBase, err := mockllm.Listen("127.0.0.1:0", mockllm.Options{RequireKey: providerKey, StallTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	cfg, err := Parse([]byte(testConfig(mockBase, dir, "")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.Port = servicetest.FreePort(t)
	cfg.Server.TLSCert, cfg.Server.TLSKey = certFile, keyFile
	sink := newRows()
	a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), sink)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := a.Listen()
	if err != nil {
		t.Fatal(err)
	}
	addr = ln.Addr().String()
	r = &relay{app: a, base: "https://" + addr, mock: mock, rows: sink, done: make(chan error, 1)}
	go func() { r.done <- a.Serve(ln) }()
	t.Cleanup(func() { r.stop(t) })
	return r, addr, pool
}

// TestChaosEdgesTLSClientGone: a client that leaves a stream on the TLS listener
// while the upstream is silent is noticed by the watchdog, which watches the
// TCP socket under TLS (it was noticed only at the next write, so a silent
// upstream ran into the idle timeout: upstream_timeout, and kept
// generating meanwhile). Three ways of leaving: a TLS close (close_notify
// alert, then FIN: bytes wait unread, which alone look like a live client),
// a bare TCP close, and the alert followed by a reset (a client closing
// with bytes unread). nginx 1.22.1 (ssl listener, proxy_buffering off, a
// stalled upstream; the same three closes from a Go client) closes the
// upstream connection about 1 ms after the client leaves, in all three
// cases; the relay within about 350 ms (its watchdog's tick, once the
// upstream has been silent for 250 ms).
func TestChaosEdgesTLSClientGone(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	r, addr, pool := startTLSRelay(t)
	body := `{"model":"m","stream":true}`
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
		"\r\nContent-Type: application/json\r\nX-Mock-Chunks: 100\r\nX-Mock-Stall-After: 2\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	var sent, unexpected int64
	for _, how := range []string{"tls close", "tcp close", "tls close_notify, then RST"} {
		sent++
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		id, events := "", 0
		for events < 2 {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: reading the stream: %v", how, err)
			}
			if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "X-Request-Id") {
				id = strings.TrimSpace(v)
			}
			if strings.HasPrefix(line, "data:") {
				events++
			}
		}
		switch how {
		case "tls close":
			_ = c.Close()
		case "tcp close":
			_ = c.NetConn().Close()
		default:
			// What a client closing with response bytes unread sends:
			// the alert waits unread at the relay, the socket is reset.
			_ = c.CloseWrite()
			_ = c.NetConn().(*net.TCPConn).SetLinger(0)
			_ = c.NetConn().Close()
		}
		rw := r.rows.wait(t, id)
		if rw.ErrorType != record.ErrClientClosed {
			t.Errorf("%s: row error_type %q after %v, want client_closed", how, rw.ErrorType, rw.Duration)
			unexpected++
		}
		t.Logf("%s: row %q after %v", how, rw.ErrorType, rw.Duration.Round(time.Millisecond))
	}
	waitFor(t, 5*time.Second, func() bool { return r.mock.Open() == 0 }, "upstream streams still open after their clients left")
	r.stop(t)
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	sinkOnly(chaosResult{scenario: "client/tls-client-gone", sent: sent, answered: sent, expected: sent - unexpected,
		unexpect: unexpected, stored: r.rows.count(nil), leaks: lk}).emit(t)
}

// TestTraceAndConnectRefused: TRACE and CONNECT with a valid relay key are
// refused (405) and never reach the provider: an upstream answering TRACE
// echoes the request, the provider key in it.
func TestTraceAndConnectRefused(t *testing.T) {
	r := startRelay(t, "")
	for _, m := range []string{"TRACE", "CONNECT"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.WriteString(c, m+" /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+"\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: no answer: %v", m, err)
		}
		body := readAll(t, resp)
		c.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d %s, want 405", m, resp.StatusCode, body)
		}
	}
	if n := r.mock.Count(); n != 0 {
		t.Fatalf("the upstream got %d requests", n)
	}
}
