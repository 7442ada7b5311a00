package servicetest

import (
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// WSTarget starts a WebSocket upstream on 127.0.0.1 that sends the request
// target (path and query, as the request line had them) of every handshake
// it receives on the returned channel (16 deep), then upgrades and hands
// the session to serve (nil: closes it at once). It stops with the test.
func WSTarget(tb testing.TB, serve func(*websocket.Conn)) (addr string, targets <-chan string) {
	tb.Helper()
	got := make(chan string, 16)
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.RequestURI
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if serve != nil {
			serve(c)
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), got
}

// WantTarget takes the next request target a WSTarget reported and checks
// it is want; sent names the client's target in the failure. It fails the
// test when none comes within 10 s.
func WantTarget(tb testing.TB, targets <-chan string, sent, want string) {
	tb.Helper()
	select {
	case got := <-targets:
		if got != want {
			tb.Errorf("%s: upstream got %q, want %q", sent, got, want)
		}
	case <-time.After(10 * time.Second):
		tb.Fatalf("%s: nothing reached the upstream", sent)
	}
}
