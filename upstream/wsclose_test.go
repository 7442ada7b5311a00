package upstream

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/stream-relay/stream-relay/record"
)

// TestWSCloseNotHeldByStalledClient: when the relay ends a session whose
// client takes no bytes (its socket full, the relay's write to it stuck),
// the upstream gets its close frame at once, without waiting for the
// client's: the client reads nothing until the upstream has reported its
// close frame. CloseWait, which bounds a close frame's write, is a minute
// here: the upstream's frame, had it waited for the client's, would come
// long past the test's bounds. The client then reads, gets the same close
// frame, and the session ends with the handshake.
func TestWSCloseNotHeldByStalledClient(t *testing.T) {
	saved := CloseWait
	CloseWait = time.Minute
	t.Cleanup(func() { CloseWait = saved })
	route, err := NewRoute(Options{Name: "ws", Path: "/v1/realtime", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-p", KeyEnv: "K",
		MaxBodyBytes: 4096}, NewClients())
	if err != nil {
		t.Fatal(err)
	}

	// The upstream floods the session with binary messages from one
	// goroutine and reads from another, reporting the close frame it gets.
	upClose := make(chan websocket.CloseError, 1)
	var flooded atomic.Int64
	upBase := serveWSTest(t, func(c *websocket.Conn) {
		c.SetCloseHandler(func(code int, text string) error {
			upClose <- websocket.CloseError{Code: code, Text: text}
			return nil
		})
		go func() {
			b := make([]byte, 4000)
			for c.WriteMessage(websocket.BinaryMessage, b) == nil {
				flooded.Add(1)
			}
		}()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	started, ran := make(chan struct{}), make(chan *record.Record, 1)
	relayBase := serveWSTest(t, func(client *websocket.Conn) {
		up, _, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial(upBase, nil)
		if err != nil {
			t.Errorf("dial the upstream: %v", err)
			return
		}
		rec := &record.Record{Start: time.Now(), TTFT: record.None}
		tn := NewTunnel(route, rec, client, up) // reads CloseWait
		close(started)
		tn.Run()
		ran <- rec
	})
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, NetDial: func(network, addr string) (net.Conn, error) {
		c, err := net.Dial(network, addr)
		if err == nil {
			// Fills sooner; above loopback's MSS, or the window the
			// kernel offers once the client reads may never reopen.
			_ = c.(*net.TCPConn).SetReadBuffer(256 << 10)
		}
		return c, err
	}}
	c, _, err := d.Dial(relayBase, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the session never began")
	}

	// The flood stops where the sockets are full: the relay's write to the
	// client is stuck, holding the client's connection.
	prev, still := int64(-1), 0
	for deadline := time.Now().Add(30 * time.Second); still < 4; {
		time.Sleep(250 * time.Millisecond)
		if cur := flooded.Load(); cur != prev {
			prev, still = cur, 0
		} else {
			still++
		}
		if time.Now().After(deadline) {
			t.Fatalf("the flood never stopped (%d messages sent)", prev)
		}
	}

	// A message past max_body_bytes: the relay's 1009 to both sides.
	if err := c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 5000))); err != nil {
		t.Fatal(err)
	}
	const reason = "client message exceeds 4096 bytes"
	select {
	case ce := <-upClose:
		if ce.Code != websocket.CloseMessageTooBig || ce.Text != reason {
			t.Errorf("upstream got close %d %q", ce.Code, ce.Text)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream got no close frame while the client took no bytes: its frame waited for the client's")
	}

	// Now the client reads: the flood it was sent, then the relay's close.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.CloseMessageTooBig || ce.Text != reason {
			t.Fatalf("client's read ended with %v, want the relay's 1009 %q", err, reason)
		}
		break
	}
	select {
	case rec := <-ran:
		h := string(rec.ResponseHeaders)
		if !strings.Contains(h, `":ws-close-code":"1009"`) || !strings.Contains(h, `":ws-closed-by":"relay"`) || rec.ErrorType != record.ErrBodyTooLarge {
			t.Errorf("record %q %s", rec.ErrorType, h)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end after the close handshake")
	}
}

// serveWSTest serves WebSocket sessions on 127.0.0.1 until the test ends,
// each with session on the server's side (its connection closed when
// session returns), and returns the ws:// URL to dial.
func serveWSTest(t *testing.T, session func(*websocket.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		session(c)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "ws://" + ln.Addr().String() + "/v1/realtime"
}
