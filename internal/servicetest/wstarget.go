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
