//go:build linux

package upstream

import (
	"net"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// hangupPair is a client connection and the relay's side of it, which a
// watched stream holds.
type hangupPair struct {
	client *net.TCPConn
	s      *Stream
}

// silentStreams opens n connections to a local listener and tracks, in w,
// a stream for each whose upstream sent its head and then nothing.
func silentStreams(t *testing.T, w *Watchdog, n int) []hangupPair {
	t.Helper()
	pairs := make([]hangupPair, n)
	for i := range pairs {
		c, sc := tcpPair(t)
		pairs[i] = hangupPair{client: c.(*net.TCPConn), s: watchedStream(w, sc)}
	}
	return pairs
}

func watchedStream(w *Watchdog, client net.Conn) *Stream {
	rec := record.Acquire(1 << 20)
	rec.TTFB = 1
	s := &Stream{route: &Route{}, rec: rec, start: time.Now(), client: client}
	w.track(s)
	return s
}

// TestWatchdogHangupSet: silent streams' client sockets join the watchdog's
// epoll set once and are never peeked at; the clients that leave (a close,
// a reset, a half-close), more than one epoll_wait returns, are all
// noticed as client_closed, and only they; a stream's end takes its socket
// out, and the next stream on the same connection puts it back in.
func TestWatchdogHangupSet(t *testing.T) {
	w := NewWatchdog(WatchdogOptions{Tick: 20 * time.Millisecond, PeekAfter: 50 * time.Millisecond})
	defer w.Stop()
	if w.hup == nil {
		t.Fatal("no epoll set on Linux")
	}
	const n, leaving = 200, 150
	pairs := silentStreams(t, w, n)
	waitFor(t, w, "every stream armed", func() bool { return len(w.hup.sets[clientSide]) == n })

	before := peeks.Load()
	time.Sleep(15 * w.tick) // many ticks past PeekAfter
	if d := peeks.Load() - before; d != 0 {
		t.Errorf("%d peeks at armed client sockets, want 0", d)
	}
	for i, p := range pairs {
		if r := reasonOf(p.s); r != "" {
			t.Fatalf("stream %d ended (%s) while its client stayed", i, r)
		}
	}

	for i, p := range pairs[:leaving] {
		switch i % 3 {
		case 0:
			p.client.Close()
		case 1:
			p.client.SetLinger(0) // a reset
			p.client.Close()
		default:
			p.client.CloseWrite() // a half-close: the client has left the request
		}
	}
	waitFor(t, w, "every leaving client noticed", func() bool {
		for _, p := range pairs[:leaving] {
			if reasonOf(p.s) == "" {
				return false
			}
		}
		return true
	})
	for i, p := range pairs {
		want := ""
		if i < leaving {
			want = record.ErrClientClosed
		}
		if r := reasonOf(p.s); r != want {
			t.Errorf("stream %d: reason %q, want %q", i, r, want)
		}
	}

	for _, p := range pairs {
		w.untrack(p.s)
	}
	w.mu.Lock()
	armed := len(w.hup.sets[clientSide])
	w.mu.Unlock()
	if armed != 0 {
		t.Fatalf("%d sockets left in the set after every stream ended", armed)
	}

	// The next request on a connection that stayed: armed again, and
	// its client's leaving noticed.
	last := pairs[n-1]
	next := watchedStream(w, last.s.client)
	waitFor(t, w, "the next stream armed", func() bool { return next.hupClient.seq > 0 })
	last.client.Close()
	waitFor(t, w, "the next stream's client noticed", func() bool { return reasonOf(next) != "" })
	if r := reasonOf(next); r != record.ErrClientClosed {
		t.Errorf("next stream: reason %q, want %s", r, record.ErrClientClosed)
	}
	w.untrack(next)
}

// TestWatchdogPeeksWithoutHangupSet: where there is no epoll set (other
// systems), the watchdog peeks at silent streams' clients instead, and
// notices the one that leaves.
func TestWatchdogPeeksWithoutHangupSet(t *testing.T) {
	w := NewWatchdog(WatchdogOptions{Tick: 20 * time.Millisecond, PeekAfter: 50 * time.Millisecond})
	w.mu.Lock()
	w.hup.close()
	w.hup = nil
	w.mu.Unlock()
	defer w.Stop()
	before := peeks.Load()
	pairs := silentStreams(t, w, 2)
	pairs[0].client.Close()
	waitFor(t, w, "the leaving client noticed", func() bool { return reasonOf(pairs[0].s) != "" })
	if r := reasonOf(pairs[0].s); r != record.ErrClientClosed {
		t.Errorf("reason %q, want %s", r, record.ErrClientClosed)
	}
	if r := reasonOf(pairs[1].s); r != "" {
		t.Errorf("the staying client's stream ended: %s", r)
	}
	if peeks.Load() == before {
		t.Error("no peek")
	}
	for _, p := range pairs {
		w.untrack(p.s)
	}
}
