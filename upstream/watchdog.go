package upstream

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// Watchdog watches every open stream from one goroutine. Each tick it
//   - aborts streams silent for longer than their route's idle timeout or
//     running longer than the request timeout (upstream_timeout), and
//   - watches, for streams whose upstream has been silent for a while,
//     whether the client has closed its connection (client_closed). While
//     chunks flow a gone client shows up as a failed write; while the
//     upstream is silent nothing is written, and fasthttp gives a body
//     stream no signal of its own. On Linux the client socket joins the
//     watchdog's epoll set of hang-ups once (hangup_linux.go); elsewhere
//     the watchdog peeks at it every PeekAfter, and
//   - gives up clients that take no byte for the idle timeout while a write
//     to them is blocked (client_closed), so that a client that stops
//     reading cannot hold a stream, its goroutine and its upstream
//     connection for ever.
//
// One goroutine and an intrusive list keep the cost per stream to two
// pointer updates under a mutex at start and end.
type Watchdog struct {
	tick      time.Duration
	peekAfter time.Duration

	mu    sync.Mutex
	head  *Stream
	count int
	hup   *hangups // nil: peek at client sockets instead

	stop chan struct{}
	done chan struct{}
}

// WatchdogOptions tune the watchdog; zero values mean the defaults.
type WatchdogOptions struct {
	// Tick is how often streams are checked; default 100ms.
	Tick time.Duration
	// PeekAfter is how long an upstream must be silent before the client
	// socket is watched (and, where it is peeked at, how often it is
	// checked again); default 250ms. A client that leaves a silent stream
	// is noticed within about PeekAfter+Tick.
	PeekAfter time.Duration
}

// NewWatchdog starts the watchdog goroutine; Stop ends it.
func NewWatchdog(o WatchdogOptions) *Watchdog {
	if o.Tick <= 0 {
		o.Tick = 100 * time.Millisecond
	}
	if o.PeekAfter <= 0 {
		o.PeekAfter = 250 * time.Millisecond
	}
	w := &Watchdog{tick: o.Tick, peekAfter: o.PeekAfter, stop: make(chan struct{}), done: make(chan struct{})}
	w.hup = newHangups()
	go w.run()
	return w
}

// Stop ends the watchdog goroutine and waits for it.
func (w *Watchdog) Stop() {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	if w.hup != nil {
		w.hup.close()
		w.hup = nil // streams that end later have nothing to take out
	}
	w.mu.Unlock()
}

// Len returns the number of streams being watched (open streams).
func (w *Watchdog) Len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.count
}

// AbortAll ends every open stream with errType (shutdown past its grace).
func (w *Watchdog) AbortAll(errType string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for s := w.head; s != nil; s = s.wdNext {
		s.abort(errType)
	}
}

func (w *Watchdog) track(s *Stream) {
	w.mu.Lock()
	s.wdTracked = true
	s.wdNext = w.head
	if w.head != nil {
		w.head.wdPrev = s
	}
	w.head = s
	w.count++
	w.mu.Unlock()
}

func (w *Watchdog) untrack(s *Stream) {
	w.mu.Lock()
	if s.wdTracked {
		if s.wdPrev != nil {
			s.wdPrev.wdNext = s.wdNext
		} else {
			w.head = s.wdNext
		}
		if s.wdNext != nil {
			s.wdNext.wdPrev = s.wdPrev
		}
		s.wdPrev, s.wdNext, s.wdTracked = nil, nil, false
		w.count--
		if s.hupSeq > 0 && w.hup != nil {
			w.hup.disarm(s)
		}
	}
	w.mu.Unlock()
}

func (w *Watchdog) run() {
	defer close(w.done)
	t := time.NewTicker(w.tick)
	defer t.Stop()
	var buf [1]byte
	hungUp := func(s *Stream) {
		if s.reason.Load() == nil {
			s.abort(record.ErrClientClosed)
		}
	}
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		for s := w.head; s != nil; s = s.wdNext {
			w.check(s, buf[:])
		}
		if w.hup != nil {
			w.hup.poll(hungUp)
		}
		w.mu.Unlock()
	}
}

// check runs under w.mu, so s cannot be released meanwhile.
func (w *Watchdog) check(s *Stream, buf []byte) {
	if s.reason.Load() != nil {
		return
	}
	now := int64(time.Since(s.start))
	if s.waiting {
		// Before the response headers: the first-byte deadline bounds the
		// wait; only the client's presence is the watchdog's business.
		if now >= int64(w.peekAfter) {
			w.watchClient(s, now, buf)
		}
		return
	}
	if ws := s.writeSince.Load(); ws != 0 {
		// A client write is in progress: the upstream is back-pressured by
		// the client, not silent. A client that takes no byte for the
		// idle timeout is given up as gone; before this check such a
		// stream was cut as upstream_timeout and its goroutine stayed
		// blocked in the write until the client disconnected.
		switch blocked := time.Duration(now - (ws - 1)); {
		case s.route.IdleTimeout > 0 && blocked > s.route.IdleTimeout:
			s.abort(record.ErrClientClosed)
		case s.route.Timeout > 0 && time.Duration(now) > s.route.Timeout:
			s.abort(record.ErrUpstreamTimeout)
		}
		return
	}
	last := s.lastRead.Load()
	if last == 0 {
		last = int64(s.rec.TTFB)
	}
	silent := time.Duration(now - last)
	switch {
	case s.route.IdleTimeout > 0 && silent > s.route.IdleTimeout:
		s.abort(record.ErrUpstreamTimeout)
		return
	case s.route.Timeout > 0 && time.Duration(now) > s.route.Timeout:
		s.abort(record.ErrUpstreamTimeout)
		return
	}
	if silent >= w.peekAfter {
		w.watchClient(s, now, buf)
	}
}

// watchClient makes sure a leaving client of s is noticed: its socket joins
// the hang-up set, once, or, where it cannot, is peeked at every peekAfter.
func (w *Watchdog) watchClient(s *Stream, now int64, buf []byte) {
	if s.hupSeq > 0 || now < s.nextPeek || s.client == nil {
		return
	}
	if s.hupSeq == 0 && w.hup != nil {
		if w.hup.arm(s) {
			return
		}
		s.hupSeq = -1
	}
	s.nextPeek = now + int64(w.peekAfter)
	if clientGone(s.client, buf) {
		s.abort(record.ErrClientClosed)
	}
}

// hupConn returns the socket under s's client connection (beneath TLS and
// the listener's wrapper), looked up once.
func (s *Stream) hupConn() syscall.RawConn {
	if s.hupRC == nil && s.client != nil {
		if rs, ok := s.client.(rawSocket); ok {
			s.hupRC = rs.RawSocket()
		}
		if s.hupRC == nil {
			if sc := socketOf(s.client); sc != nil {
				s.hupRC, _ = sc.SyscallConn()
			}
		}
	}
	return s.hupRC
}

// clientGone peeks at the client's socket without consuming anything: a
// zero-byte read means the client closed its side; an error other than "no
// data yet" means the connection is broken. Bytes waiting mean it is alive,
// unless the client has also sent its FIN: over TLS a leaving client sends
// a close_notify alert before it, which a peek cannot tell from data. A
// TLS connection (or the relay's listener wrapper) is unwrapped to the TCP
// socket beneath, so a gone TLS client is noticed as early as a plain one.
func clientGone(c net.Conn, buf []byte) bool {
	peeks.Add(1)
	sc := socketOf(c)
	if sc == nil {
		return false // not a socket: a gone client is noticed by the next write
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	// Control, not Read: Read first checks the socket's read deadline, and
	// the server's read_timeout deadline, armed when the request began,
	// stays armed for as long as the stream lasts. Through Read, every
	// peek past read_timeout (30 s by default) failed and a stream's
	// client looked gone as soon as its upstream fell silent for a moment.
	// The peek never waits, so it needs neither the deadline nor the
	// poller.
	gone := false
	err = rc.Control(func(fd uintptr) {
		n, _, rerr := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case rerr == nil && n == 0:
			gone = true
		case rerr != nil && !errors.Is(rerr, syscall.EAGAIN) && !errors.Is(rerr, syscall.EINTR):
			gone = true
		case rerr == nil:
			gone = peerClosed(fd)
		}
	})
	return gone || err != nil
}

// peeks counts the peeks at client sockets (tests).
var peeks atomic.Int64

// socketOf returns the socket under c: c itself, or what c wraps (a
// *tls.Conn's NetConn, the relay listener's connection wrapper), a few
// layers deep at most.
func socketOf(c net.Conn) syscall.Conn {
	for range 4 {
		if sc, ok := c.(syscall.Conn); ok {
			return sc
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = w.NetConn()
	}
	return nil
}
