package app

import (
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestWSClientLeavesDuringHandshake: a client that leaves while the
// upstream has not answered its WebSocket handshake has the upstream
// connection closed soon after, its row client_closed; the relay held it
// until first_byte_timeout (120 s by default), and the upstream went on.
func TestWSClientLeavesDuringHandshake(t *testing.T) {
	closed := make(chan time.Time, 1)
	asked := make(chan struct{})
	var first sync.Once
	up := connTarget(t, func(c net.Conn) {
		_ = c.SetReadDeadline(time.Now().Add(90 * time.Second))
		var b [1]byte
		if _, err := c.Read(b[:]); err == nil {
			first.Do(func() { close(asked) })
		}
		_, _ = io.Copy(io.Discard, c) // takes the handshake, never answers: until the relay closes
		select {
		case closed <- time.Now():
		default:
		}
	})
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: realtime
    path: /v1/realtime
    upstream: ws://`+up+`
    auth_env: TEST_PROVIDER_KEY
    kind: ws
    first_byte_timeout: 90s
`, "rate_limit: {disabled: true}"))
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.base, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.WriteString(c, "GET /v1/realtime?model=m HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-asked: // the relay is waiting for the upstream's 101
	case <-time.After(30 * time.Second):
		t.Fatal("the handshake never reached the upstream")
	}
	left := time.Now()
	_ = c.Close()
	select {
	case at := <-closed:
		if d := at.Sub(left); d > 30*time.Second {
			t.Errorf("upstream connection closed %v after the client left", d)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the upstream connection stayed open a minute after the client left")
	}
	r := waitPoolRows(t, p, 1)[0]
	if r.ErrorType != record.ErrClientClosed || r.Status != 499 {
		t.Errorf("row %+v; want 499 client_closed", r)
	}
}
