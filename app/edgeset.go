package app

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// edgeSet holds the relay's open client connections, for the end of a
// drain. The server's shutdown waits for connections that are inside a
// request until the grace period is over, and then leaves them: an upload
// still arriving then (its head read, its body not whole) got no answer
// and no row, and the process exited under it. cutUploads ends such reads
// at once; the server's error handler then answers each 503
// shutting_down, with its id and row, before the storage closes.
// Connections join when accepted and leave when closed (by whoever closes
// them) or hijacked (a detached stream or a WebSocket session, which the
// drain ends itself).
type edgeSet struct {
	mu sync.Mutex
	m  map[*edgeConn]struct{}
}

func (s *edgeSet) add(c *edgeConn) {
	if s == nil {
		return
	}
	c.set = s
	s.mu.Lock()
	if s.m == nil {
		s.m = map[*edgeConn]struct{}{}
	}
	s.m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *edgeSet) remove(c *edgeConn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

// connState is the server's ConnState hook: a connection closed or
// hijacked leaves the set (and a hijack guard runs: closeGuarded).
func (s *edgeSet) connState(c net.Conn, st fasthttp.ConnState) {
	closeGuarded(c, st)
	if st != fasthttp.StateClosed && st != fasthttp.StateHijacked {
		return
	}
	if ec := edgeOf(c); ec != nil {
		s.remove(ec)
	}
}

// cutUploads makes the read of every connection inside a request (from the
// read that began it until its answer is written) fail now, and returns
// how many there were.
func (s *edgeSet) cutUploads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.m {
		if c.busy.Load() {
			_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
			n++
		}
	}
	return n
}

// busy returns how many connections are inside a request.
func (s *edgeSet) busy() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.m {
		if c.busy.Load() {
			n++
		}
	}
	return n
}

// waitAnswered waits, up to limit, until no connection is inside a
// request, neither of the set nor of others (a detached stream's
// goroutine's: others counts them): the cut ones answered (and closed).
func (s *edgeSet) waitAnswered(ctx context.Context, limit time.Duration, others func() int) {
	deadline := time.Now().Add(limit)
	for s.busy()+others() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}
