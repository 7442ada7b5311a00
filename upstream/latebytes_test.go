package upstream

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestLateBytesNotTheNextAnswer: an upstream that sends bytes after an
// answer ended (here a whole second response after a 204, a few ms later)
// does not answer the next request on that connection with them: the
// connection is dropped when it comes back from the pool with bytes
// waiting. The next client got the upstream's stray "BAD".
func TestLateBytesNotTheNextAnswer(t *testing.T) {
	var served atomic.Int64
	addr, accepted := scriptedUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for readPost(br) == nil {
			if served.Add(1) == 1 {
				_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
				time.Sleep(20 * time.Millisecond)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nBAD")
				continue
			}
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nGOOD")
		}
	})
	r := rawRoute(t, addr)
	s, resp, _, _, err := openPost(r)
	if err != nil {
		t.Fatal(err)
	}
	if s.Prepare(resp, nil) || resp.StatusCode() != 204 {
		t.Fatalf("first answer: %d", resp.StatusCode())
	}
	time.Sleep(200 * time.Millisecond) // the stray bytes are there by now
	s, resp, _, _, err = openPost(r)
	if err != nil {
		t.Fatal(err)
	}
	s.Prepare(resp, nil)
	if string(resp.Body()) != "GOOD" {
		t.Fatalf("second request answered %d %q: the first answer's stray bytes", resp.StatusCode(), resp.Body())
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d upstream connections, want 2 (the dirty one dropped)", n)
	}
}

// TestOwnConnectionLimitEjectsNoTarget: a request that finds the relay's
// own max_conns for the host taken (fasthttp's ErrNoFreeConns) says nothing
// about the upstream: its target stays in the pool. Healthy targets were
// ejected for it (max_fails 1: at the first such request).
func TestOwnConnectionLimitEjectsNoTarget(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	addr, _ := scriptedUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if readPost(br) != nil {
			return
		}
		<-release // the first request's answer never comes: its connection stays taken
	})
	r := rawRouteWith(t, addr, func(o *Options) {
		o.MaxConns, o.ConnectTimeout, o.FirstByteTimeout = 1, 300*time.Millisecond, 20*time.Second
		o.Health.MaxFails = 1
	})
	go func() { _, _, _, _, _ = openPost(r) }() // holds the one connection
	deadline := time.Now().Add(20 * time.Second)
	for r.client.ConnsCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first request never connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, _, errType, status, err := openPost(r)
	if err == nil || status != 503 {
		t.Fatalf("second request: %v (%s, %d), want 503: no free connection", err, errType, status)
	}
	if tg := r.pool.targets[0]; !tg.health.healthy() {
		t.Fatal("the target was ejected for the relay's own connection limit")
	}
}
