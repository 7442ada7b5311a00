package handlers

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestConnUnder hijacks real connections from a fasthttp server: with
// nothing sent ahead, connUnder gives the connection under fasthttp's
// wrapper (what the next ServeConn reads straight from); with a second
// request pipelined behind the first, the wrapper, whose reader holds it.
func TestConnUnder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type result struct{ unwrapped bool }
	results := make(chan result, 2)
	// The relay's server settings (app.go): the reader is released when
	// nothing is buffered, and hijacked connections are the relay's to close.
	srv := &fasthttp.Server{ReduceMemoryUsage: true, KeepHijackedConns: true, Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) {
			u := connUnder(c)
			results <- result{unwrapped: u != c}
			_, _ = io.WriteString(u, "HTTP/1.1 204 No Content\r\n\r\n")
			_ = c.Close()
		})
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	for _, c := range []struct {
		name      string
		send      string
		unwrapped bool
	}{
		{"one request", "GET /a HTTP/1.1\r\nHost: x\r\n\r\n", true},
		{"a second pipelined", "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", false},
	} {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, c.send); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-results:
			if r.unwrapped != c.unwrapped {
				t.Errorf("%s: connUnder unwrapped %v, want %v", c.name, r.unwrapped, c.unwrapped)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no hijack", c.name)
		}
		_ = conn.Close()
	}
}
