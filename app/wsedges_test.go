package app

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// TestWSUpgradeKeyMasked: an upstream whose 101 repeats the request in its
// headers (Authorization, or the URL with auth_query's key) does not hand
// the provider key to the client or the row: it is masked, as in a
// refusal's headers and an HTTP route's answers. Before, both carried it.
func TestWSUpgradeKeyMasked(t *testing.T) {
	for _, tc := range []struct{ name, header, query, extra string }{
		{"header", "Authorization", "", ""},
		{"query", "", "api_key", "    auth_query: api_key\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startWSUpstream(t, tc.header, tc.query)
			r := startWSRelay(t, up, tc.extra, nil)
			d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
			c, resp, err := d.Dial(strings.Replace(r.base, "http://", "ws://", 1)+"/v1/realtime?model=m&echo=1",
				http.Header{"Authorization": {"Bearer " + relayKey}})
			if err != nil {
				t.Fatal(err)
			}
			echoed := resp.Header.Get("X-Echo-Auth") + resp.Header.Get("X-Echo-Url")
			if tc.header != "" && !strings.Contains(resp.Header.Get("X-Echo-Auth"), "[redacted]") ||
				tc.query != "" && !strings.Contains(resp.Header.Get("X-Echo-Url"), "[redacted]") {
				t.Errorf("the upstream's echo did not reach the client masked: %q", echoed)
			}
			_ = c.Close()
			row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
			for where, s := range map[string]string{"client's 101": echoed, "row": row.RespHeaders} {
				if strings.Contains(s, providerKey) {
					t.Errorf("the provider key reached the %s: %q", where, s)
				}
			}
		})
	}
}

// TestWSMaxConns: a ws route's max_conns bounds its open upstream
// connections (one a session): a session past it is refused 503
// upstream_connect, as an HTTP route's request is, and one may open again
// once a session ended. Before, max_conns did nothing on ws routes.
func TestWSMaxConns(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	var yaml string
	r := startRelayYAML(t, func(y string) string {
		yaml = strings.Replace(y, "storage:\n", wsRoute(up, "    max_conns: 1\n")+"storage:\n", 1)
		return yaml
	}, nil)
	first, _, err := dialWS(t, r.base, relayKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	readMsg(t, first) // session.created: the session runs
	// A reload, even of the same file, makes new routes: the count goes on.
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		_, resp, err := dialWS(t, r.base, relayKey, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("second session with max_conns 1 (reloads before it: %d): %v %+v", i, err, resp)
		}
		if row := r.rows.wait(t, resp.Header.Get("X-Request-Id")); row.ErrorType != "upstream_connect" {
			t.Errorf("refused session's row: %+v", row)
		}
		if err := r.app.Reload(path, ""); err != nil {
			t.Fatal(err)
		}
	}
	_ = first.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
	_, _ = readClose(t, first, 10*time.Second)
	_ = first.Close()
	// The first session's upstream connection closes as its tunnel ends.
	for i := 0; ; i++ {
		c, resp, err := dialWS(t, r.base, relayKey, nil)
		if err == nil {
			_ = c.Close()
			break
		}
		if i == 100 || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("a session after the first ended: %v %+v", err, resp)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestWSShutdownInHandshake: a session whose upstream has not answered its
// handshake when the grace period ends is given up (503 shutting_down, and
// its row), instead of waiting for first_byte_timeout: the dialer reads the
// 101 without looking at its context, and shutdown ended only the connect.
// Before, the client got nothing and the request no row.
func TestWSShutdownInHandshake(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // holds it, silent
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		select {
		case c := <-accepted:
			_ = c.Close()
		default:
		}
	})
	silent := &wsUpstream{base: "http://" + ln.Addr().String()}
	r := startWSRelay(t, silent, "    first_byte_timeout: 10m\n", func(c *Config) { c.Server.ShutdownGrace = time.Second })
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		d := websocket.Dialer{HandshakeTimeout: 2 * time.Minute}
		_, resp, err := d.Dial(strings.Replace(r.base, "http://", "ws://", 1)+"/v1/realtime?model=m",
			http.Header{"Authorization": {"Bearer " + relayKey}})
		done <- result{resp, err}
	}()
	var held net.Conn
	select {
	case held = <-accepted:
	case <-time.After(30 * time.Second):
		t.Fatal("the relay did not connect to the upstream")
	}
	accepted <- held // for the cleanup
	stopped := make(chan struct{})
	go func() { r.stop(t); close(stopped) }()
	var got result
	select {
	case got = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("the client got no answer within a minute of the shutdown (first_byte_timeout is 10 minutes)")
	}
	<-stopped
	if got.resp == nil || got.resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("answer at shutdown: %v %+v, want 503", got.err, got.resp)
	}
	if row := r.rows.wait(t, got.resp.Header.Get("X-Request-Id")); row.ErrorType != "shutting_down" {
		t.Errorf("row %+v, want shutting_down", row)
	}
}

// bigMessageRelay starts a Realtime-like upstream and a relay whose ws
// route takes messages of up to 32 MiB, captures meta only and has an
// idle_timeout of 1 s.
func bigMessageRelay(t *testing.T) (*wsUpstream, *relay) {
	t.Helper()
	up := startWSUpstream(t, "Authorization", "")
	return up, startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "storage:\n", `  - name: realtime
    path: /v1/realtime
    upstream: `+strings.Replace(up.base, "http://", "ws://", 1)+`
    auth_env: TEST_PROVIDER_KEY
    kind: ws
    capture: meta
    max_body_bytes: 33554432
    idle_timeout: 1s
storage:
`, 1)
	}, nil)
}

// slowConn reads at most 256 KiB every 20 ms: about 13 MB/s.
type slowConn struct{ net.Conn }

func (c slowConn) Read(p []byte) (int, error) {
	time.Sleep(20 * time.Millisecond)
	return c.Conn.Read(p[:min(len(p), 256<<10)])
}

// TestWSSlowReaderBigMessage: a client that reads a large message slowly
// but steadily (24 MiB at about 13 MB/s: longer than idle_timeout, and more
// than the sockets' buffers hold) gets it whole: the write of a message
// has idle_timeout and a second a MiB, and a message being written is no
// idle session. Before, the one write deadline of idle_timeout cut it
// mid-message, and the row said client_closed.
func TestWSSlowReaderBigMessage(t *testing.T) {
	_, r := bigMessageRelay(t)
	d := websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		NetDial: func(network, addr string) (net.Conn, error) {
			c, err := net.Dial(network, addr)
			if err != nil {
				return nil, err
			}
			return slowConn{c}, nil
		},
	}
	c, resp, err := d.Dial(strings.Replace(r.base, "http://", "ws://", 1)+"/v1/realtime?model=m",
		http.Header{"Authorization": {"Bearer " + relayKey}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readMsg(t, c) // session.created
	const n = 24 << 20
	if err := c.WriteMessage(websocket.TextMessage, []byte("big:"+strconv.Itoa(n))); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	_, msg, err := c.ReadMessage()
	if err != nil || len(msg) != n {
		t.Fatalf("read %d of %d bytes: %v", len(msg), n, err)
	}
	_ = c.Close()
	// The row tells the bytes relayed: the whole message, once.
	if row := r.rows.wait(t, resp.Header.Get("X-Request-Id")); row.BytesOut < n || row.BytesOut > n+4096 {
		t.Errorf("row bytes_out %d, want the message's %d and the session's small ones", row.BytesOut, n)
	}
}

// TestWSStalledReaderBigMessage: a client that reads nothing while a large
// message is written to it holds the session idle_timeout and a second a
// MiB of the message at most (here 1 s + 16 s), not the several minutes a
// slower rate allowed (8 minutes for 30 MiB at 64 KiB a second).
func TestWSStalledReaderBigMessage(t *testing.T) {
	up, r := bigMessageRelay(t)
	c, resp, err := dialWS(t, r.base, relayKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readMsg(t, c) // session.created; nothing is read after it
	if err := c.WriteMessage(websocket.TextMessage, []byte("big:"+strconv.Itoa(16<<20))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up.ended:
	case <-time.After(90 * time.Second):
		t.Fatal("the session was still open 90 s after its client stopped reading (bound: 17 s)")
	}
	if row := r.rows.wait(t, resp.Header.Get("X-Request-Id")); row.ErrorType == "" {
		t.Errorf("row of a session its relay ended: error_type empty")
	}
}
