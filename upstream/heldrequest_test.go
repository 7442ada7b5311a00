package upstream

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/socket"
	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// TestHeldRequest: requests on one keep-alive connection to an upstream
// that answers a new connection before it reads the request, and later
// requests 20 ms after it read them. The first request (a new connection)
// is written and read as usual and gets its early answer, instead of
// waiting for a readiness that came before its wait; the later ones, on
// the reused connection, are written by the read of their answer, which
// never finds the socket empty.
func TestHeldRequest(t *testing.T) {
	const answer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	addr, _ := scriptedUpstream(t, func(c net.Conn) {
		if _, err := io.WriteString(c, answer); err != nil { // before the request
			return
		}
		br := bufio.NewReader(c)
		for n := 0; ; n++ {
			if readPost(br) != nil {
				return
			}
			if n == 0 {
				continue // answered already
			}
			time.Sleep(20 * time.Millisecond)
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
		}
	})
	r := rawRoute(t, addr)
	for i := 0; i < 4; i++ {
		before := socket.EmptyReads()
		start := time.Now()
		s, resp, errType, status, err := openPost(r)
		if err != nil {
			t.Fatalf("request %d: Open after %v: %v (%s, %d)", i, time.Since(start), err, errType, status)
		}
		empty := socket.EmptyReads() - before
		if s.Prepare(resp, nil) {
			t.Fatalf("request %d: the whole answer did not come with its head", i)
		}
		if string(resp.Body()) != "ok" {
			t.Fatalf("request %d: body %q", i, resp.Body())
		}
		if i > 0 && empty != 0 {
			t.Errorf("request %d, on the reused connection: %d reads of the answer found nothing, want 0", i, empty)
		}
	}
	if n := r.client.ConnsCount(); n != 1 {
		t.Errorf("%d upstream connections, want the one reused", n)
	}
}

// rawRoute is a route to the upstream at addr, for tests whose upstream
// writes its answers byte by byte.
func rawRoute(t *testing.T, addr string) *Route {
	t.Helper()
	return rawRouteWith(t, addr, nil)
}

// rawRouteWith is rawRoute with options changed by set.
func rawRouteWith(t *testing.T, addr string, set func(*Options)) *Route {
	t.Helper()
	o := Options{Name: "t", Path: "/*", Upstream: "http://" + addr, ProviderKey: "sk-p", KeyEnv: "K", FirstByteTimeout: 20 * time.Second}
	if set != nil {
		set(&o)
	}
	r, err := NewRoute(o, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// openPost opens POST /v1/x with the body "{}" on r.
func openPost(r *Route) (*Stream, *fasthttp.Response, string, int, error) {
	var h fasthttp.RequestHeader
	h.SetMethod("POST")
	h.SetRequestURI("/v1/x")
	resp := &fasthttp.Response{}
	in := &Request{Header: &h, Method: []byte("POST"), Path: []byte("/v1/x"), Body: []byte("{}")}
	s, errType, status, err := r.Open(in, record.Acquire(1<<20), resp, nil, func(*record.Record) {})
	return s, resp, errType, status, err
}

// readPost reads, on the upstream's side, one request openPost sent: its
// head and its body "{}".
func readPost(br *bufio.Reader) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if line == "\r\n" {
			break
		}
	}
	_, err := io.ReadFull(br, make([]byte, 2))
	return err
}

// scriptedUpstream listens on loopback and runs serve on each connection it
// accepts (closed after, with a deadline of a minute) until the test ends.
// It returns the address and the count of connections accepted.
func scriptedUpstream(t *testing.T, serve func(c net.Conn)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	accepted := new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(60 * time.Second))
				serve(c)
			}()
		}
	}()
	return ln.Addr().String(), accepted
}
