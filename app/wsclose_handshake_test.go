package app

import (
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestWSHandshakeKeepsConnection: a WebSocket handshake sent as HTTP/1.0 or
// with Connection: close is refused 400 before any upstream is dialed (a
// row of bad_request). fasthttp ends such a connection after the answer
// instead of handing it over: the 101 went out, the session was cut at
// once, its upstream dialed and dropped, and the row blamed the client
// (499 client_closed).
func TestWSHandshakeKeepsConnection(t *testing.T) {
	var dialed atomic.Int64
	up := connTarget(t, func(c net.Conn) {
		dialed.Add(1)
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.Copy(io.Discard, c)
	})
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: realtime
    path: /v1/realtime
    upstream: ws://`+up+`
    auth_env: TEST_PROVIDER_KEY
    kind: ws
`, "rate_limit: {disabled: true}"))
	handshake := func(proto, connection string) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.base, "http://"), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = io.WriteString(c, "GET /v1/realtime?model=m "+proto+"\r\nHost: x\r\nAuthorization: Bearer "+relayKey+
			"\r\nUpgrade: websocket\r\nConnection: "+connection+"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		got, _ := io.ReadAll(c)
		return string(got)
	}
	for _, tc := range []struct{ proto, connection string }{
		{"HTTP/1.0", "Upgrade"},
		{"HTTP/1.1", "Upgrade, close"},
	} {
		if got := handshake(tc.proto, tc.connection); statusOf(got) != 400 || !strings.Contains(got, "HTTP/1.1 and keep its connection") {
			t.Errorf("%s with Connection: %s answered %q, want 400", tc.proto, tc.connection, got)
		}
	}
	if n := dialed.Load(); n != 0 {
		t.Errorf("%d upstream connections for refused handshakes, want 0", n)
	}
	rows := p.sink.all()
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2: %+v", len(rows), rows)
	}
	for _, r := range rows {
		if r.Status != 400 || r.ErrorType != "bad_request" {
			t.Errorf("row %+v, want 400 bad_request", r)
		}
	}
}
