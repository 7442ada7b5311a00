//go:build !race

package upstream

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// TestAwaitBodyAllocatesNothing: a route of two targets holds each answer
// until the first byte of its body (firstbody.go); a request whose answer
// has its body come a moment after its head allocates nothing through it,
// as through a route of one target, which does not wait (the test
// upstream allocates nothing either: every allocation counts).
func TestAwaitBodyAllocatesNothing(t *testing.T) {
	addr := lateBodyServer(t)
	one, err := NewRoute(Options{Name: "one", Path: "/*", Upstream: "http://" + addr, Logger: quiet}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	two, err := NewRoute(Options{Name: "two", Path: "/*", Logger: quiet,
		Targets: []Target{{Name: "a", URL: "http://" + addr}, {Name: "b", URL: "http://" + addr}}}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	var h fasthttp.RequestHeader
	h.SetMethod("POST")
	h.SetRequestURI("/v1/x")
	in := &Request{Header: &h, Method: []byte("POST"), Path: []byte("/v1/x"), Body: []byte("{}")}
	rec := record.Acquire(1 << 20)
	var resp fasthttp.Response
	w := flushWriter{bufio.NewWriter(io.Discard)}
	run := func(r *Route) func() {
		return func() {
			rec.Start = time.Now()
			resp.Reset()
			s, errType, status, err := r.Open(in, rec, &resp, nil, func(*record.Record) {})
			if err != nil {
				t.Fatalf("Open: %v (%s, %d)", err, errType, status)
			}
			if s.Prepare(&resp, nil) {
				if _, err := s.WriteTo(w); err != nil {
					t.Fatal(err)
				}
				_ = s.CloseWithError(nil)
			}
		}
	}
	for _, r := range []*Route{one, two} {
		run(r)() // a keep-alive connection each, and grown buffers
	}
	nOne := testing.AllocsPerRun(50, run(one))
	nTwo := testing.AllocsPerRun(50, run(two))
	if nTwo != 0 {
		t.Errorf("%v allocations a request through two targets (awaiting the body), want 0 (%v through one)", nTwo, nOne)
	}
}

// lateBodyServer answers every request on a keep-alive connection with a
// head, then, 2 ms later, its two-byte body.
func lateBodyServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				head := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
				body, in := []byte("ok"), make([]byte, 2)
				br := bufio.NewReader(c)
				for {
					for { // the head; the body "{}" follows it
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) == 2 {
							break
						}
					}
					if _, err := io.ReadFull(br, in); err != nil {
						return
					}
					if _, err := c.Write(head); err != nil {
						return
					}
					time.Sleep(2 * time.Millisecond)
					if _, err := c.Write(body); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
