package upstream

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// dropSecondUpstream answers the first request on each connection (keep-
// alive) and reads the second whole, then waits work and closes the
// connection without a byte of answer. It counts the requests it read.
func dropSecondUpstream(t *testing.T, work time.Duration) (string, *atomic.Int64) {
	t.Helper()
	read := new(atomic.Int64)
	addr, _ := scriptedUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			if readPost(br) != nil {
				return
			}
			read.Add(1)
			if i == 1 {
				time.Sleep(work)
				return
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	return addr, read
}

// openTwice sends two requests on r, one after the other (the second on the
// first's connection), with the header set by set, and returns the second's
// outcome.
func openTwice(t *testing.T, r *Route, set func(*fasthttp.RequestHeader)) (string, int, error) {
	t.Helper()
	var errType string
	var status int
	var err error
	for i := range 2 {
		var h fasthttp.RequestHeader
		h.SetMethod("POST")
		h.SetRequestURI("/v1/x")
		set(&h)
		resp := &fasthttp.Response{}
		in := &Request{Header: &h, Method: h.Method(), Path: []byte("/v1/x"), Body: []byte("{}")}
		var s *Stream
		s, errType, status, err = r.Open(in, record.Acquire(1<<20), resp, nil, func(*record.Record) {})
		if i == 0 {
			if err != nil {
				t.Fatalf("first request: %v", err)
			}
			resp.SetBodyStream(s, -1)
			if _, err := io.ReadAll(resp.BodyStream()); err != nil {
				t.Fatalf("first answer: %v", err)
			}
			_ = resp.CloseBodyStream()
		} else if err == nil {
			resp.SetBodyStream(s, -1)
			_ = resp.CloseBodyStream()
		}
	}
	return errType, status, err
}

// TestDroppedAfterWorkNotResent: an upstream that took a POST whole on a
// reused connection, worked on it and then closed the connection without
// answering did run it: the relay answers 502 upstream_reset and does not
// send it again (which ran, and billed, the generation twice with nothing
// in the row to say so). With an Idempotency-Key the request goes again.
func TestDroppedAfterWorkNotResent(t *testing.T) {
	for _, tt := range []struct {
		name  string
		set   func(*fasthttp.RequestHeader)
		reads int64
	}{
		{"post", func(*fasthttp.RequestHeader) {}, 2},
		{"idempotency key", func(h *fasthttp.RequestHeader) { h.Set("Idempotency-Key", "k-1") }, 3},
		{"put", func(h *fasthttp.RequestHeader) { h.SetMethod("PUT") }, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, read := dropSecondUpstream(t, 300*time.Millisecond)
			errType, status, err := openTwice(t, rawRoute(t, addr), tt.set)
			if got := read.Load(); got != tt.reads {
				t.Errorf("upstream read %d requests; want %d", got, tt.reads)
			}
			if tt.reads == 2 && (err == nil || errType != record.ErrUpstreamReset || status != fasthttp.StatusBadGateway) {
				t.Errorf("second request: %v (%s, %d); want upstream_reset 502", err, errType, status)
			}
			if tt.reads == 3 && err != nil {
				t.Errorf("second request: %v (%s); want it sent again and answered", err, errType)
			}
		})
	}
}

// TestStaleConnectionResent: a reused connection that fails at once, as
// one the upstream closed while it sat idle does, sends the POST again on
// a new connection. (The upstream here reads the request before it closes;
// the slack is raised so that a busy machine's scheduling cannot make the
// failure look late.)
func TestStaleConnectionResent(t *testing.T) {
	old := staleSlack
	staleSlack = time.Minute
	t.Cleanup(func() { staleSlack = old })
	addr, read := dropSecondUpstream(t, 0)
	if _, _, err := openTwice(t, rawRoute(t, addr), func(*fasthttp.RequestHeader) {}); err != nil {
		t.Fatalf("second request: %v; want it sent again and answered", err)
	}
	if got := read.Load(); got != 3 {
		t.Errorf("upstream read %d requests; want 3 (the second one twice)", got)
	}
}
