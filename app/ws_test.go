package app

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// wsUpstream is a Realtime-like WebSocket server on 127.0.0.1 for the
// tests: it checks the provider key, records what it saw, and answers
// each message by its text:
//
//	"close:CODE:REASON"  sends a close frame with CODE and REASON
//	"vanish"             drops the TCP connection without a close frame
//	"big:N"              sends a text message of N bytes
//	"stream:N"           sends N text messages "delta-i"
//	"done"               sends a response.done event with usage 20 in, 10 out
//	"flood:N"            sends N binary messages of 4000 bytes (counted in flooded)
//	anything else        echoed ("echo:" + text; binary as it came)
type wsUpstream struct {
	base string
	srv  *http.Server

	mu      sync.Mutex
	headers []http.Header
	queries []url.Values
	closes  []websocket.CloseError // close frames received
	ended   chan time.Time         // when a session's read loop ended
	flooded atomic.Int64           // messages "flood:N" has sent, all sessions
}

func startWSUpstream(t *testing.T, authHeader, authQuery string) *wsUpstream {
	t.Helper()
	return startWSUpstreamTLS(t, authHeader, authQuery, "", "")
}

// startWSUpstreamTLS is startWSUpstream over TLS with the certificate in
// certFile and keyFile (plain when empty); base is then https://.
func startWSUpstreamTLS(t *testing.T, authHeader, authQuery, certFile, keyFile string) *wsUpstream {
	t.Helper()
	u := &wsUpstream{ended: make(chan time.Time, 64)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/realtime", func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.headers = append(u.headers, r.Header.Clone())
		u.queries = append(u.queries, r.URL.Query())
		u.mu.Unlock()
		got := r.Header.Get(authHeader)
		if authQuery != "" {
			got = r.URL.Query().Get(authQuery)
		} else if strings.EqualFold(authHeader, "Authorization") {
			got = strings.TrimPrefix(got, "Bearer ")
		}
		if got != providerKey {
			http.Error(w, `{"error":"bad key"}`, http.StatusUnauthorized)
			return
		}
		hdr := http.Header{"X-Upstream-Session": {"sess-1"}}
		if r.URL.Query().Get("echo") == "1" {
			// A debugging upstream that repeats the request in its
			// answer: the provider key with it.
			hdr.Set("X-Echo-Auth", r.Header.Get(authHeader))
			hdr.Set("X-Echo-Url", r.URL.String())
		}
		if p := r.Header.Get("Sec-WebSocket-Protocol"); p != "" {
			hdr.Set("Sec-WebSocket-Protocol", strings.Split(p, ",")[0])
		}
		c, err := up.Upgrade(w, r, hdr)
		if err != nil {
			return
		}
		u.session(c)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	u.base = "http://" + ln.Addr().String()
	if certFile != "" {
		u.base = "https://" + ln.Addr().String()
		go func() { _ = u.srv.ServeTLS(ln, certFile, keyFile) }()
	} else {
		go func() { _ = u.srv.Serve(ln) }()
	}
	t.Cleanup(func() { _ = u.srv.Close() })
	return u
}

func (u *wsUpstream) session(c *websocket.Conn) {
	defer func() { u.ended <- time.Now() }()
	defer c.Close()
	_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"session.created"}`))
	for {
		typ, msg, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				u.mu.Lock()
				u.closes = append(u.closes, *ce)
				u.mu.Unlock()
			}
			return
		}
		s := string(msg)
		switch {
		case typ == websocket.BinaryMessage:
			_ = c.WriteMessage(websocket.BinaryMessage, msg)
		case strings.HasPrefix(s, "close:"):
			parts := strings.SplitN(s, ":", 3)
			code, _ := strconv.Atoi(parts[1])
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, parts[2]), time.Now().Add(time.Second))
			// Wait for the answer, as a server does.
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		case s == "vanish":
			_ = c.NetConn().Close()
			return
		case strings.HasPrefix(s, "big:"):
			n, _ := strconv.Atoi(s[4:])
			_ = c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", n)))
		case s == "done":
			_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"response.done","event_id":"e1","response":{"id":"r1","status":"completed",`+
				`"usage":{"total_tokens":30,"input_tokens":20,"output_tokens":10,"input_token_details":{"text_tokens":20,"audio_tokens":0}}}}`))
		case strings.HasPrefix(s, "flood:"):
			n, _ := strconv.Atoi(s[6:])
			b := make([]byte, 4000)
			for range n {
				if c.WriteMessage(websocket.BinaryMessage, b) != nil {
					break
				}
				u.flooded.Add(1)
			}
		case strings.HasPrefix(s, "stream:"):
			n, _ := strconv.Atoi(s[7:])
			for i := range n {
				_ = c.WriteMessage(websocket.TextMessage, []byte("delta-"+strconv.Itoa(i)))
			}
		default:
			_ = c.WriteMessage(websocket.TextMessage, append([]byte("echo:"), msg...))
		}
	}
}

func (u *wsUpstream) seen() ([]http.Header, []url.Values, []websocket.CloseError) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.headers), slices.Clone(u.queries), slices.Clone(u.closes)
}

// wsRoute is a ws route in front of up, for testConfig's routes list.
func wsRoute(up *wsUpstream, extra string) string {
	return `  - name: realtime
    path: /v1/realtime
    upstream: ` + strings.Replace(up.base, "http://", "ws://", 1) + `
    auth_env: TEST_PROVIDER_KEY
    kind: ws
    max_body_bytes: 4096
` + extra
}

// startWSRelay starts a relay whose routes include the ws route.
func startWSRelay(t *testing.T, up *wsUpstream, routeExtra string, mutate func(*Config)) *relay {
	t.Helper()
	return startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "storage:\n", wsRoute(up, routeExtra)+"storage:\n", 1)
	}, mutate)
}

// startWSRelayFor starts a relay whose ws route goes to a WebSocket
// upstream of the test's own, served by h.
func startWSRelayFor(t *testing.T, h http.Handler) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return startWSRelay(t, &wsUpstream{base: "http://" + ln.Addr().String()}, "", nil)
}

// dialWS opens a session through the relay (or directly, with key "").
func dialWS(t *testing.T, base, key string, hdr http.Header) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	if hdr == nil {
		hdr = http.Header{}
	}
	if key != "" {
		hdr.Set("Authorization", "Bearer "+key)
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	return d.Dial(strings.Replace(base, "http://", "ws://", 1)+"/v1/realtime?model=gpt-realtime", hdr)
}

// readText reads one message, failing the test on an error.
func readMsg(t *testing.T, c *websocket.Conn) (int, string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, string(b)
}

// readClose reads until the connection ends and returns the close error
// (nil if it ended without a close frame) and when.
func readClose(t *testing.T, c *websocket.Conn, within time.Duration) (*websocket.CloseError, time.Time) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(within))
	for range 100 {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		now := time.Now()
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
			return ce, now
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the connection stayed open for %v", within)
		}
		return nil, now
	}
	t.Fatal("too many messages before the close")
	return nil, time.Time{}
}

// TestWSSession relays a session: text and binary both ways, ping/pong, the
// client's close code and reason to the upstream and the upstream's answer
// back; the provider key replaces the relay key; the row holds every frame
// with its direction, offsets, TTFT, bytes and the close.
func TestWSSession(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", nil)
	c, resp, err := dialWS(t, r.base, relayKey, http.Header{"Openai-Beta": {"realtime=v1"}, "Sec-Websocket-Protocol": {"realtime"}})
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer c.Close()
	id := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != 101 || id == "" || c.Subprotocol() != "realtime" || resp.Header.Get("X-Upstream-Session") != "sess-1" {
		t.Fatalf("handshake: status %d id %q subprotocol %q headers %v", resp.StatusCode, id, c.Subprotocol(), resp.Header)
	}
	if _, m := readMsg(t, c); m != `{"type":"session.created"}` {
		t.Fatalf("first upstream message %q", m)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte(`{"type":"response.create"}`)); err != nil {
		t.Fatal(err)
	}
	if typ, m := readMsg(t, c); typ != websocket.TextMessage || m != `echo:{"type":"response.create"}` {
		t.Fatalf("text echo %d %q", typ, m)
	}
	audio := []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}
	if err := c.WriteMessage(websocket.BinaryMessage, audio); err != nil {
		t.Fatal(err)
	}
	if typ, m := readMsg(t, c); typ != websocket.BinaryMessage || m != string(audio) {
		t.Fatalf("binary echo %d %q", typ, m)
	}
	pong := make(chan string, 1)
	c.SetPongHandler(func(s string) error { pong <- s; return nil })
	if err := c.WriteControl(websocket.PingMessage, []byte("hb-1"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	_ = c.WriteMessage(websocket.TextMessage, []byte("stream:3"))
	for i := range 3 {
		if _, m := readMsg(t, c); m != "delta-"+strconv.Itoa(i) { // the pong is handled while reading
			t.Fatalf("stream message %d: %q", i, m)
		}
	}
	for range 2 {
		_ = c.WriteMessage(websocket.TextMessage, []byte("done"))
		if _, m := readMsg(t, c); !strings.Contains(m, "response.done") {
			t.Fatalf("done: %q", m)
		}
	}
	select {
	case p := <-pong:
		if p != "hb-1" {
			t.Fatalf("pong %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong for the client's ping")
	}
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "client done"), time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	ce, _ := readClose(t, c, 5*time.Second)
	if ce == nil || ce.Code != 4001 {
		t.Fatalf("close answer %v, want the upstream's echo of 4001", ce)
	}
	row := r.rows.wait(t, id)
	// The upstream server records the close after it echoed it: give the
	// recording a moment on a busy machine.
	hdrs, _, closes := up.seen()
	for deadline := time.Now().Add(5 * time.Second); len(closes) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		hdrs, _, closes = up.seen()
	}
	if len(closes) != 1 || closes[0].Code != 4001 || closes[0].Text != "client done" {
		t.Fatalf("upstream saw closes %v", closes)
	}
	h := hdrs[len(hdrs)-1]
	if h.Get("Authorization") != "Bearer "+providerKey || h.Get("Openai-Beta") != "realtime=v1" {
		t.Fatalf("upstream handshake headers %v", h)
	}
	for k, vs := range h {
		if strings.Contains(strings.Join(vs, ","), relayKey) {
			t.Fatalf("the relay key reached the upstream in %s", k)
		}
	}
	if row.Status != 101 || row.ErrorType != "" || row.Route != "realtime" || row.Model != "gpt-realtime" || row.TTFB < 0 ||
		row.TokensIn != 40 || row.TokensOut != 20 {
		t.Fatalf("row %+v", row)
	}
	if strings.Contains(row.ReqHeaders, relayKey) || strings.Contains(row.RespHeaders, providerKey) || !strings.Contains(row.ReqHeaders, `"openai-beta":"realtime=v1"`) {
		t.Fatalf("row headers: %s / %s", row.ReqHeaders, row.RespHeaders)
	}
	want := []string{
		`<t{"type":"session.created"}`,
		`>t{"type":"response.create"}`,
		`<techo:{"type":"response.create"}`,
		">b" + string(audio),
		"<b" + string(audio),
	}
	if len(row.Chunks) < len(want)+8 || !slices.Equal(row.Chunks[:len(want)], want) {
		t.Fatalf("chunks %q", row.Chunks)
	}
	for _, must := range []string{">phb-1", "<ohb-1", ">tstream:3", "<tdelta-2", ">c4001 client done", "<c4001 "} {
		if !slices.Contains(row.Chunks, must) {
			t.Fatalf("chunk %q missing from %q", must, row.Chunks)
		}
	}
	if len(row.ChunkTimes) != len(row.Chunks) || row.ChunkCount != len(row.Chunks) || !slices.IsSorted(row.ChunkTimes) {
		t.Fatalf("%d offsets, %d chunks, count %d: %v", len(row.ChunkTimes), len(row.Chunks), row.ChunkCount, row.ChunkTimes)
	}
	// TTFT: from the first client message to the upstream's next one.
	if row.TTFT < 0 || row.TTFT > time.Second {
		t.Fatalf("ttft %v", row.TTFT)
	}
	var in, out int64
	for _, ch := range row.Chunks {
		if ch[0] == '>' {
			in += int64(len(ch) - 2)
		} else {
			out += int64(len(ch) - 2)
		}
	}
	// The close chunks hold the code as text, the frames 2 bytes of it.
	if row.BytesIn != in-int64(len("4001 "))+2 || row.BytesOut != out-int64(len("4001 "))+2 {
		t.Fatalf("bytes in %d out %d, chunks say %d %d", row.BytesIn, row.BytesOut, in, out)
	}
	for _, m := range []string{`":ws-close-code":"4001"`, `":ws-close-reason":"client done"`, `":ws-closed-by":"client"`, `"x-upstream-session":"sess-1"`} {
		if !strings.Contains(row.RespHeaders, m) {
			t.Fatalf("response headers %s lack %s", row.RespHeaders, m)
		}
	}
}

// TestWSUpstreamEnds: the upstream's close code and reason reach the
// client; an upstream that vanishes closes the client's session promptly.
func TestWSUpstreamEnds(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", nil)

	c, resp := openSession(t, r)
	_ = c.WriteMessage(websocket.TextMessage, []byte("close:4400:upstream says bye"))
	ce, _ := readClose(t, c, 5*time.Second)
	if ce == nil || ce.Code != 4400 || ce.Text != "upstream says bye" {
		t.Fatalf("client got %v", ce)
	}
	c.Close()
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if !strings.Contains(row.RespHeaders, `":ws-closed-by":"upstream"`) || !slices.Contains(row.Chunks, "<c4400 upstream says bye") || row.ErrorType != "" {
		t.Fatalf("row %s %q %q", row.RespHeaders, row.Chunks, row.ErrorType)
	}

	c, resp = openSession(t, r)
	sent := time.Now()
	_ = c.WriteMessage(websocket.TextMessage, []byte("vanish"))
	ce, at := readClose(t, c, 5*time.Second)
	if ce == nil || ce.Code != websocket.CloseInternalServerErr {
		t.Fatalf("client got %v after the upstream vanished, want 1011", ce)
	}
	t.Logf("upstream vanished: client closed %v after its message", at.Sub(sent))
	if at.Sub(sent) > 2*time.Second {
		t.Fatalf("client closed %v after the upstream vanished", at.Sub(sent))
	}
	row = r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.ErrorType != "upstream_reset" || !strings.Contains(row.RespHeaders, `":ws-close-code":"1011"`) {
		t.Fatalf("row %q %s", row.ErrorType, row.RespHeaders)
	}
}

// TestWSClientVanishes: a client that drops its connection closes the
// upstream session promptly (1001).
func TestWSClientVanishes(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", nil)
	c, resp := openSession(t, r)
	gone := time.Now()
	_ = c.NetConn().Close()
	select {
	case at := <-up.ended:
		t.Logf("client vanished: upstream session ended %v later", at.Sub(gone))
		if at.Sub(gone) > 2*time.Second {
			t.Fatalf("upstream ended %v after the client vanished", at.Sub(gone))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream session outlived its client")
	}
	_, _, closes := up.seen()
	if len(closes) != 1 || closes[0].Code != websocket.CloseGoingAway {
		t.Fatalf("upstream got closes %v, want 1001", closes)
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.ErrorType != "client_closed" || !strings.Contains(row.RespHeaders, `":ws-closed-by":"client"`) {
		t.Fatalf("row %q %s", row.ErrorType, row.RespHeaders)
	}
}

// TestWSLimits: a message over max_body_bytes either way ends the session
// with 1009; a session silent for idle_timeout ends with 1001.
func TestWSLimits(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "    idle_timeout: 500ms\n", nil)

	// Client to upstream: too big.
	c, resp := openSession(t, r)
	_ = c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("y", 5000)))
	if ce, _ := readClose(t, c, 5*time.Second); ce == nil || ce.Code != websocket.CloseMessageTooBig || ce.Text != "client message exceeds 4096 bytes" {
		t.Fatalf("client got %v for a message over the limit", ce)
	}
	c.Close()
	if row := r.rows.wait(t, resp.Header.Get("X-Request-Id")); row.ErrorType != "body_too_large" {
		t.Fatalf("row error %q", row.ErrorType)
	}

	// Upstream to client: too big.
	c, resp = openSession(t, r)
	_ = c.WriteMessage(websocket.TextMessage, []byte("big:5000"))
	if ce, _ := readClose(t, c, 5*time.Second); ce == nil || ce.Code != websocket.CloseMessageTooBig || !strings.Contains(ce.Text, "upstream") {
		t.Fatalf("client got %v for an upstream message over the limit", ce)
	}
	c.Close()
	r.rows.wait(t, resp.Header.Get("X-Request-Id"))

	// Idle.
	c, resp = openSession(t, r)
	start := time.Now()
	ce, at := readClose(t, c, 5*time.Second)
	if ce == nil || ce.Code != websocket.CloseGoingAway || ce.Text != "idle timeout" {
		t.Fatalf("idle session: client got %v", ce)
	}
	if at.Sub(start) < 300*time.Millisecond {
		t.Fatalf("idle close after %v, before the 500ms timeout", at.Sub(start))
	}
	if row := r.rows.wait(t, resp.Header.Get("X-Request-Id")); row.ErrorType != "upstream_timeout" {
		t.Fatalf("row error %q", row.ErrorType)
	}
}

// waitCloses waits until up has received n close frames, and returns them.
func (u *wsUpstream) waitCloses(t *testing.T, n int) []websocket.CloseError {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, _, closes := u.seen()
		if len(closes) >= n || time.Now().After(deadline) {
			return closes
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWSTooBigReason: a message over max_body_bytes, either way, gets
// both sides the relay's 1009 with the reason naming the sender (the
// sender too, not the library's 1009 with no reason), and the row's close
// reason is that one.
func TestWSTooBigReason(t *testing.T) {
	for _, tc := range []struct {
		name, send, reason string
	}{
		{"client", strings.Repeat("y", 5000), "client message exceeds 4096 bytes"},
		{"client, just over", strings.Repeat("y", 4097), "client message exceeds 4096 bytes"},
		{"upstream", "big:5000", "upstream message exceeds 4096 bytes"},
		{"upstream, just over", "big:4097", "upstream message exceeds 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startWSUpstream(t, "Authorization", "")
			r := startWSRelay(t, up, "", nil)
			c, resp := openSession(t, r)
			// At the limit: relayed.
			_ = c.WriteMessage(websocket.TextMessage, []byte("big:4096"))
			if _, m := readMsg(t, c); len(m) != 4096 {
				t.Fatalf("a message of max_body_bytes came as %d bytes", len(m))
			}
			_ = c.WriteMessage(websocket.TextMessage, []byte(tc.send))
			ce, _ := readClose(t, c, 5*time.Second)
			if ce == nil || ce.Code != websocket.CloseMessageTooBig || ce.Text != tc.reason {
				t.Errorf("client got %v, want 1009 %q", ce, tc.reason)
			}
			closes := up.waitCloses(t, 1)
			if len(closes) != 1 || closes[0].Code != websocket.CloseMessageTooBig || closes[0].Text != tc.reason {
				t.Errorf("upstream got %v, want 1009 %q", closes, tc.reason)
			}
			row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
			for _, m := range []string{`":ws-close-code":"1009"`, `":ws-close-reason":"` + tc.reason + `"`, `":ws-closed-by":"relay"`} {
				if !strings.Contains(row.RespHeaders, m) {
					t.Errorf("response headers %s lack %s", row.RespHeaders, m)
				}
			}
			if row.ErrorType != "body_too_large" {
				t.Errorf("row error %q", row.ErrorType)
			}
		})
	}
}

// TestWSIdleCloseBothSides: on an idle timeout every client and every
// upstream gets the relay's own "1001 idle timeout", never the other
// side's answer to it (the client's echo, 1001 with no reason, used to
// reach the upstream first in most sessions).
func TestWSIdleCloseBothSides(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "    idle_timeout: 200ms\n", nil)
	const n = 16
	clientCloses := make(chan *websocket.CloseError, n)
	ids := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		c, resp, err := dialWS(t, r.base, relayKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ids[i] = resp.Header.Get("X-Request-Id")
		readMsg(t, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The client library answers the close with its code and no
			// reason, as browsers do.
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if !errors.As(err, &ce) {
						ce = nil
					}
					clientCloses <- ce
					return
				}
			}
		}()
	}
	wg.Wait()
	close(clientCloses)
	bad := 0
	for ce := range clientCloses {
		if ce == nil || ce.Code != websocket.CloseGoingAway || ce.Text != "idle timeout" {
			bad++
			t.Errorf("client got %v", ce)
		}
	}
	closes := up.waitCloses(t, n)
	if len(closes) != n {
		t.Errorf("upstream got %d close frames, want %d", len(closes), n)
	}
	for _, ce := range closes {
		if ce.Code != websocket.CloseGoingAway || ce.Text != "idle timeout" {
			bad++
			t.Errorf("upstream got %v", ce)
		}
	}
	for _, id := range ids {
		row := r.rows.wait(t, id)
		if row.ErrorType != "upstream_timeout" || !strings.Contains(row.RespHeaders, `":ws-close-reason":"idle timeout"`) {
			t.Errorf("row %q %s", row.ErrorType, row.RespHeaders)
		}
		// The client's echo is in the row, not passed on.
		if !slices.Contains(row.Chunks, ">c1001 ") {
			t.Errorf("the client's answer is not in the row: %q", row.Chunks)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d closes were not the relay's 1001 idle timeout", bad, 2*n)
	}
}

// TestWSLateMessageNotRecorded: a message that comes after the relay sent
// its own close (an idle timeout) cannot be passed on, and the row does
// not list it as relayed (it did, and counted its bytes).
func TestWSLateMessageNotRecorded(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "    idle_timeout: 300ms\n", nil)
	c, resp, err := dialWS(t, r.base, relayKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	id := resp.Header.Get("X-Request-Id")
	readMsg(t, c)
	c.SetCloseHandler(func(int, string) error { return nil }) // no answer to the relay's close yet
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Text != "idle timeout" {
				t.Fatalf("read %v, want the relay's idle timeout", err)
			}
			break
		}
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("late-message")); err != nil {
		t.Fatal(err)
	}
	row := r.rows.wait(t, id)
	for _, ch := range row.Chunks {
		if strings.Contains(ch, "late-message") {
			t.Errorf("a message sent after the relay's close is in the row as relayed: %q", row.Chunks)
		}
	}
}

// TestWSKeySubprotocolNotForwarded: a browser's key entry in
// Sec-WebSocket-Protocol ("openai-insecure-api-key.<key>") never reaches
// the upstream; the other subprotocols do, the client's 101 names the one
// the upstream chose, and the row redacts the entry's key.
func TestWSKeySubprotocolNotForwarded(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", nil)
	for _, tc := range []struct{ name, protocols, upstream, chosen string }{
		{"with realtime", "realtime, openai-insecure-api-key." + relayKey + ", openai-beta.realtime-v1", "realtime, openai-beta.realtime-v1", "realtime"},
		{"key entry alone", "openai-insecure-api-key." + relayKey, "", ""},
		{"key entry first, upper case", "OPENAI-INSECURE-API-KEY." + relayKey + ",realtime", "realtime", "realtime"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := dialWS(t, r.base, relayKey, http.Header{"Sec-Websocket-Protocol": {tc.protocols}})
			if err != nil {
				t.Fatalf("dial: %v (%v)", err, resp)
			}
			defer c.Close()
			if c.Subprotocol() != tc.chosen {
				t.Errorf("client's subprotocol %q, want %q", c.Subprotocol(), tc.chosen)
			}
			readMsg(t, c)
			hs, _, _ := up.seen()
			h := hs[len(hs)-1]
			if got := strings.Join(h.Values("Sec-Websocket-Protocol"), ","); got != tc.upstream {
				t.Errorf("upstream's Sec-WebSocket-Protocol %q, want %q", got, tc.upstream)
			}
			for k, vs := range h {
				if v := strings.ToLower(strings.Join(vs, ",")); strings.Contains(v, relayKey) || strings.Contains(v, "openai-insecure-api-key") {
					t.Errorf("the relay key's entry reached the upstream in %s: %q", k, vs)
				}
			}
			if h.Get("Authorization") != "Bearer "+providerKey {
				t.Errorf("upstream Authorization %q", h.Get("Authorization"))
			}
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
			readClose(t, c, 5*time.Second)
			row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
			if strings.Contains(row.ReqHeaders, relayKey) || !strings.Contains(strings.ToLower(row.ReqHeaders), `openai-insecure-api-key.[redacted]`) {
				t.Errorf("row request headers %s", row.ReqHeaders)
			}
		})
	}
}

// TestWSKeySubprotocolAuth: a browser client with no header of its own
// sends its relay key as the subprotocol entry
// "openai-insecure-api-key.<key>": the relay takes it (last, after every
// other place a key may come), never forwards it, and answers the
// subprotocol the upstream chose; a wrong key there is 401.
func TestWSKeySubprotocolAuth(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", nil)
	c, resp, err := dialWS(t, r.base, "", http.Header{"Sec-Websocket-Protocol": {"realtime, openai-insecure-api-key." + relayKey}})
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer c.Close()
	if resp.StatusCode != 101 || c.Subprotocol() != "realtime" {
		t.Fatalf("handshake: status %d subprotocol %q", resp.StatusCode, c.Subprotocol())
	}
	readMsg(t, c)
	_ = c.WriteMessage(websocket.TextMessage, []byte("hi"))
	if _, m := readMsg(t, c); m != "echo:hi" {
		t.Fatalf("echo %q", m)
	}
	hs, _, _ := up.seen()
	h := hs[len(hs)-1]
	if got := h.Get("Sec-Websocket-Protocol"); got != "realtime" {
		t.Errorf("upstream's Sec-WebSocket-Protocol %q", got)
	}
	if h.Get("Authorization") != "Bearer "+providerKey {
		t.Errorf("upstream Authorization %q", h.Get("Authorization"))
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	readClose(t, c, 5*time.Second)
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.Status != 101 || row.KeyID == "" || strings.Contains(row.ReqHeaders, relayKey) {
		t.Errorf("row status %d key %q request headers %s", row.Status, row.KeyID, row.ReqHeaders)
	}
	_, resp, err = dialWS(t, r.base, "", http.Header{"Sec-Websocket-Protocol": {"realtime, openai-insecure-api-key.sk-wrong"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong key in the subprotocol: %v %v", err, resp)
	}
}

// TestWSHandshake: the rate limit is taken at the handshake (429 before any
// upgrade), a wrong relay key is 401, a plain GET 426, an upstream refusal
// is relayed, and auth_query puts the key in the query.
func TestWSHandshake(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", func(c *Config) {
		c.RateLimit.Disabled = false
		c.RateLimit.Default = 2
		c.RateLimit.Burst = 2
	})
	for i := range 2 {
		c, _, err := dialWS(t, r.base, relayKey, nil)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		c.Close()
	}
	_, resp, err := dialWS(t, r.base, relayKey, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third session: %v %v", err, resp)
	}
	if hs, _, _ := up.seen(); len(hs) != 2 {
		t.Fatalf("the upstream saw %d handshakes, want 2", len(hs))
	}
	_, resp, err = dialWS(t, r.base, "sk-wrong", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong key: %v %v", err, resp)
	}
	req, _ := http.NewRequest(http.MethodGet, r.base+"/v1/realtime", nil)
	req.Header.Set("Authorization", "Bearer sk-relay-second")
	plain, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, plain)
	if plain.StatusCode != http.StatusUpgradeRequired || !strings.Contains(body, "WebSocket") {
		t.Fatalf("plain GET: %d %s", plain.StatusCode, body)
	}

	// auth_query, and a refusal relayed: the upstream wants the key in
	// ?api_key=; a route sending it in the header is refused (401).
	upq := startWSUpstream(t, "", "api_key")
	rq := startWSRelay(t, upq, "    auth_query: api_key\n", nil)
	c, _, err := dialWS(t, rq.base+"", relayKey, nil)
	if err != nil {
		t.Fatalf("auth_query session: %v", err)
	}
	c.Close()
	hs, qs, _ := upq.seen()
	if qs[0].Get("api_key") != providerKey || qs[0].Get("model") != "gpt-realtime" || hs[0].Get("Authorization") != "" {
		t.Fatalf("auth_query: upstream saw query %v headers %v", qs[0], hs[0])
	}
	rh := startWSRelay(t, upq, "", nil)
	_, resp, err = dialWS(t, rh.base, relayKey, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refused upstream handshake: %v %v", err, resp)
	}
	if row := rh.rows.wait(t, resp.Header.Get("X-Request-Id")); row.ErrorType != "upstream_status" || row.Status != 401 {
		t.Fatalf("refused row %+v", row)
	}
}

// TestWSRowInClickHouse stores a session's row in the real ClickHouse and
// reads it back: chunks with direction prefixes, offsets, TTFT, bytes,
// status and the close.
func TestWSRowInClickHouse(t *testing.T) {
	chURL := servicetest.ClickHouse(t)
	db := testDatabase(t, chURL)
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", withClickHouse(chURL, db))
	c, resp := openSession(t, r)
	_ = c.WriteMessage(websocket.TextMessage, []byte("stream:2"))
	readMsg(t, c)
	readMsg(t, c)
	_ = c.WriteMessage(websocket.BinaryMessage, []byte{1, 2, 3})
	readMsg(t, c)
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second))
	readClose(t, c, 5*time.Second)
	c.Close()
	id := resp.Header.Get("X-Request-Id")
	r.rows.wait(t, id)
	r.stop(t)
	rows := servicetest.Query(t, chURL, db, "SELECT status, error_type, ttft_ms, bytes_in, bytes_out, chunk_count, response_chunks, chunk_offsets_ms, "+
		"visitParamExtractString(response_headers, ':ws-close-code') AS close_code FROM stream_logs WHERE request_id = '"+id+"'")
	if len(rows) != 1 {
		t.Fatalf("%d rows", len(rows))
	}
	row := rows[0]
	var chunks []string
	for _, c := range row["response_chunks"].([]any) {
		chunks = append(chunks, c.(string))
	}
	want := []string{`<t{"type":"session.created"}`, ">tstream:2", "<tdelta-0", "<tdelta-1", ">b\x01\x02\x03", "<b\x01\x02\x03", ">c1000 bye", "<c1000 "}
	if !slices.Equal(chunks, want) {
		t.Fatalf("chunks %q, want %q", chunks, want)
	}
	offsets := row["chunk_offsets_ms"].([]any)
	got := fmt.Sprint(row["status"], " ", row["error_type"], " ", row["bytes_in"], " ", row["bytes_out"], " ", row["chunk_count"], " ", len(offsets), " ", row["close_code"])
	if got != "101  16 45 8 8 1000" || row["ttft_ms"] == nil {
		t.Fatalf("row: %s ttft %v", got, row["ttft_ms"])
	}
	// The README's queries (/work/notes/ws-readme.md) run on 18.16.
	msgs := servicetest.Query(t, chURL, db, "SELECT substring(c, 1, 1) AS dir, substring(c, 2, 1) AS type, substring(c, 3) AS payload, t AS at_ms "+
		"FROM stream_logs ARRAY JOIN response_chunks AS c, chunk_offsets_ms AS t WHERE request_id = '"+id+"'")
	if len(msgs) != 8 || msgs[1]["dir"] != ">" || msgs[1]["type"] != "t" || msgs[1]["payload"] != "stream:2" {
		t.Fatalf("messages %v", msgs)
	}
	ends := servicetest.Query(t, chURL, db, "SELECT visitParamExtractString(response_headers, ':ws-closed-by') AS closed_by, "+
		"visitParamExtractString(response_headers, ':ws-close-code') AS code, count() AS sessions, quantile(0.95)(ttft_ms) AS ttft_p95 "+
		"FROM stream_logs WHERE route = 'realtime' AND created_at >= today() GROUP BY closed_by, code ORDER BY sessions DESC")
	if len(ends) != 1 || ends[0]["closed_by"] != "client" || ends[0]["code"] != "1000" {
		t.Fatalf("ends %v", ends)
	}
}

// TestWSLatency measures the round trip of a small message (client →
// upstream echo → client) directly and through the relay, one run of 2,000
// messages each, and logs p50/p99 and what the relay adds. It asserts only
// that every message came back.
func TestWSLatency(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "    capture: full\n", nil)
	const n = 2000
	measure := func(base, key string) []time.Duration {
		hdr := http.Header{}
		if key == "" {
			hdr.Set("Authorization", "Bearer "+providerKey)
		}
		c, _, err := dialWS(t, base, key, hdr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		readMsg(t, c)
		msg := []byte(`{"type":"input_audio_buffer.append","audio":"AAAA"}`)
		rtts := make([]time.Duration, 0, n)
		for range n {
			start := time.Now()
			if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
				t.Fatal(err)
			}
			readMsg(t, c)
			rtts = append(rtts, time.Since(start))
		}
		slices.Sort(rtts)
		return rtts
	}
	direct := measure(up.base, "")
	relayed := measure(r.base, relayKey)
	if len(direct) != n || len(relayed) != n {
		t.Fatalf("%d and %d round trips", len(direct), len(relayed))
	}
	p := func(d []time.Duration, q float64) time.Duration { return d[int(q*float64(len(d)-1))] }
	t.Logf("WebSocket round trip of a %d-message run: direct p50 %v p99 %v; through the relay p50 %v p99 %v; added p50 %v p99 %v",
		n, p(direct, .5), p(direct, .99), p(relayed, .5), p(relayed, .99), p(relayed, .5)-p(direct, .5), p(relayed, .99)-p(direct, .99))
}

// TestWSShutdown: draining closes open sessions at once with 1001, and the
// row says shutting_down.
func TestWSShutdown(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", nil)
	c, resp := openSession(t, r)
	stopped := make(chan struct{})
	go func() { r.app.relay.Drain(); close(stopped) }()
	ce, _ := readClose(t, c, 5*time.Second)
	if ce == nil || ce.Code != websocket.CloseGoingAway || ce.Text != "relay shutting down" {
		t.Fatalf("client got %v at shutdown", ce)
	}
	<-stopped
	if row := r.rows.wait(t, resp.Header.Get("X-Request-Id")); row.ErrorType != "shutting_down" {
		t.Fatalf("row error %q", row.ErrorType)
	}
}

// TestWSConfig: kind ws takes ws://, wss:// and http(s) upstreams and
// auth_query; the example in configs/config.yaml parses once uncommented;
// auth_query elsewhere and bad names are refused, naming the field.
func TestWSConfig(t *testing.T) {
	b, err := os.ReadFile("../configs/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var example []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "  # - name: realtime") {
			in = true
		}
		if in && !strings.HasPrefix(line, "  # ") {
			break
		}
		if in {
			example = append(example, "  "+strings.TrimPrefix(line, "  # "))
		}
	}
	if len(example) < 10 {
		t.Fatalf("no ws example in configs/config.yaml (%d lines)", len(example))
	}
	cfg, err := Parse([]byte("routes:\n" + strings.Join(example, "\n") + "\n"))
	if err != nil {
		t.Fatalf("the ws example: %v", err)
	}
	if len(cfg.Routes) != 2 || cfg.Routes[0].Kind != "ws" || cfg.Routes[1].AuthQuery != "api_key" || cfg.Routes[0].Capture != "full" {
		t.Fatalf("parsed %+v", cfg.Routes)
	}
	for _, tc := range []struct{ yaml, field string }{
		{"routes: [{name: a, path: /a, upstream: 'wss://x', kind: sse}]", "routes[0].upstream"},
		{"routes: [{name: a, path: /a, upstream: 'https://x', auth_query: key}]", "routes[0].auth_query"},
		{"routes: [{name: a, path: /a, upstream: 'wss://x', kind: ws, auth_query: 'a&b'}]", "routes[0].auth_query"},
		{"routes: [{name: a, path: /a, upstream: 'ftp://x', kind: ws}]", "routes[0].upstream"},
	} {
		if _, err := Parse([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v, want one naming %s", tc.yaml, err, tc.field)
		}
	}
}

// TestWSUnansweredClose: a client that does not answer the relay's close
// frame (it reads nothing) is cut after upstream.CloseWait, and the row is
// written.
func TestWSUnansweredClose(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", nil)
	c, resp := openSession(t, r)
	_ = c.WriteMessage(websocket.TextMessage, []byte("vanish"))
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id")) // the client reads nothing meanwhile
	if row.ErrorType != "upstream_reset" {
		t.Fatalf("row error %q", row.ErrorType)
	}
	if ce, _ := readClose(t, c, 5*time.Second); ce == nil || ce.Code != websocket.CloseInternalServerErr {
		t.Fatalf("client got %v", ce)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.NetConn().Read(make([]byte, 16)); err == nil {
		t.Fatalf("the relay kept the connection open (read %d bytes)", n)
	}
}

// TestWSOverTLS: wss:// on the relay's own TLS listener to a wss://
// upstream (tls_skip_verify): the session is relayed through the listener's
// connection wrapper, whose start-of-request checks must not take the
// client's frames for a request.
func TestWSOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	up := startWSUpstreamTLS(t, "Authorization", "", certFile, keyFile)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	// The route's upstream is up's https:// URL, dialed as wss://.
	yaml := strings.Replace(testConfig("http://127.0.0.1:1", dir, ""), "storage:\n",
		wsRoute(up, "    tls_skip_verify: true\n")+"storage:\n", 1)
	cfg, err := Parse([]byte(yaml))
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
	r := &relay{app: a, base: "https://" + ln.Addr().String(), rows: sink, done: make(chan error, 1)}
	go func() { r.done <- a.Serve(ln) }()
	t.Cleanup(func() { r.stop(t) })

	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{RootCAs: pool}}
	c, resp, err := d.Dial("wss://"+ln.Addr().String()+"/v1/realtime", http.Header{"Authorization": {"Bearer " + relayKey}})
	if err != nil {
		t.Fatalf("dial: %v %v", err, resp)
	}
	defer c.Close()
	readMsg(t, c)
	const n = 200
	for i := range n {
		// Text that reads like a request line, and binary.
		msg := []byte("GET / HTTP/1.1\r\nX: " + strconv.Itoa(i) + "\n\n")
		typ := websocket.TextMessage
		if i%2 == 1 {
			typ, msg = websocket.BinaryMessage, []byte{0x16, 3, 1, byte(i)}
		}
		if err := c.WriteMessage(typ, msg); err != nil {
			t.Fatal(err)
		}
		gotTyp, got := readMsg(t, c)
		if gotTyp != typ || (typ == websocket.TextMessage && got != "echo:"+string(msg)) || (typ == websocket.BinaryMessage && got != string(msg)) {
			t.Fatalf("message %d: %d %q", i, gotTyp, got)
		}
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	if ce, _ := readClose(t, c, 5*time.Second); ce == nil || ce.Code != 1000 {
		t.Fatalf("close %v", ce)
	}
	if row := r.rows.wait(t, resp.Header.Get("X-Request-Id")); row.Status != 101 || row.ChunkCount != 2*n+3 || row.ErrorType != "" {
		t.Fatalf("row status %d chunks %d error %q", row.Status, row.ChunkCount, row.ErrorType)
	}
}

// openSession opens a session through r with the relay key, reads the
// upstream's greeting and closes the client's side when the test ends.
func openSession(t *testing.T, r *relay) (*websocket.Conn, *http.Response) {
	t.Helper()
	c, resp, err := dialWS(t, r.base, relayKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	readMsg(t, c)
	return c, resp
}

// TestWSSlowMessageIsTraffic: a message whose frames arrive slowly (a
// large audio buffer uploaded over a slow link) is traffic: the session is
// not ended as idle while its bytes keep coming, though the whole message
// takes longer than idle_timeout. Before the fix only a whole message
// counted, and this one was cut with 1001 "idle timeout" halfway.
func TestWSSlowMessageIsTraffic(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "    idle_timeout: 1s\n", nil)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, WriteBufferSize: 512}
	c, _, err := d.Dial(strings.Replace(r.base, "http://", "ws://", 1)+"/v1/realtime?model=gpt-realtime", http.Header{"Authorization": {"Bearer " + relayKey}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readMsg(t, c) // session.created
	w, err := c.NextWriter(websocket.TextMessage)
	if err != nil {
		t.Fatal(err)
	}
	const pieces = 7 // each write past the buffer sends the frame before it: one every 250 ms
	piece := strings.Repeat("z", 512)
	for i := range pieces {
		if i > 0 {
			time.Sleep(250 * time.Millisecond)
		}
		if _, err := io.WriteString(w, piece); err != nil {
			t.Fatalf("piece %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("the session ended while the message came (%v)", err)
	}
	if want := "echo:" + strings.Repeat(piece, pieces); typ != websocket.TextMessage || string(b) != want {
		t.Fatalf("got %d bytes, want the echo of the %d sent", len(b), pieces*len(piece))
	}
}
