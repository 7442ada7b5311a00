package app

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// TestWSClientResetBeforeUpgrade: a client that resets its connection
// right after its handshake, before the upstream's 101 came, gets no
// session: writing the 101 fails, fasthttp never runs the hijack handler,
// and the relay gives the session up when the server closes the
// connection. Before, the upstream session and its max_conns slot were
// held until the 10 s hijack guard fired (other clients got 503), and the
// row said 101.
func TestWSClientResetBeforeUpgrade(t *testing.T) {
	var opened, ended atomic.Int64
	upg := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/realtime", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") == "1" {
			time.Sleep(300 * time.Millisecond) // the client resets meanwhile
		}
		c, err := upg.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		opened.Add(1)
		defer c.Close()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				ended.Add(1)
				return
			}
		}
	})
	r := startWSRelayFor(t, mux)

	// The reset comes while the upstream dial runs (slow) or, racing the
	// upstream's quick 101, as the relay writes its own: the second is the
	// case fasthttp's hijack handler never runs for.
	const resets = 24
	for i := range resets {
		c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /v1/realtime?slow=%d HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", i%4/3, relayKey)
		if i%4 != 3 {
			time.Sleep(time.Duration(i%3) * 200 * time.Microsecond)
		}
		_ = c.(*net.TCPConn).SetLinger(0)
		_ = c.Close() // a reset
	}
	// Every row comes, each saying the client left, and
	// every upstream session the relay opened ends: well before the 10 s
	// guard would have ended them (8 s leaves a busy machine room).
	deadline := time.Now().Add(8 * time.Second)
	var got []row
	for time.Now().Before(deadline) {
		r.rows.mu.Lock()
		got = append(got[:0], r.rows.rows...)
		r.rows.mu.Unlock()
		if len(got) == resets && ended.Load() == opened.Load() {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, e := opened.Load(), ended.Load(); e != n {
		t.Errorf("%d of %d upstream sessions of clients that reset before their 101 still open after 8 s", n-e, n)
	}
	if len(got) != resets {
		t.Fatalf("%d rows for %d sessions", len(got), resets)
	}
	// 499 where the 101 could not be written; 101 where it was (the
	// reset came after it, and the session found the client gone).
	for _, rw := range got {
		if rw.Status != 499 && rw.Status != 101 || rw.ErrorType != "client_closed" {
			t.Errorf("row: status %d error %q, want 499 (or 101) client_closed", rw.Status, rw.ErrorType)
		}
	}
	t.Logf("%d upstream sessions opened for %d resets", opened.Load(), resets)
}
