package upstream

import (
	"errors"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/internal/socket"
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
//   - wakes a stream copied in its upstream's poller callback whose
//     upstream closed without the poller telling it apart (pollcopy.go):
//     its upstream socket joins the same epoll set, and
//   - gives up clients that take no byte for the idle timeout while a write
//     to them is blocked (client_closed), so that a client that stops
//     reading cannot hold a stream, its goroutine and its upstream
//     connection for ever.
//
// One goroutine and a slice of entries keep the cost per stream to an
// append or a swap under a mutex at start and end. Each check notes in the
// stream's entry when the stream next has something for it (its idle
// timeout, its request timeout, its client's watch, each from what it
// knows then); a tick passes the entries not due yet without touching
// their streams. The entries lie together in memory and the streams do
// not: 9,000 slow streams checked by walking a list of the streams
// themselves cost 4 % of a core in cache misses alone (0.41 s of 10 s).
// Only what moves such a time later happens between checks (an upstream
// read); a stream that changes state (its response headers came) is
// tracked anew and checked at the next tick.
type Watchdog struct {
	tick      time.Duration
	peekAfter time.Duration
	base      time.Time // the zero of clock
	checks    uint64    // checks made, under mu (tests)

	mu      sync.Mutex
	watched []watched // the open streams, in no order
	hup     *hangups  // nil: peek at client sockets instead

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
	w := &Watchdog{tick: o.Tick, peekAfter: o.PeekAfter, base: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
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
	return len(w.watched)
}

// AbortAll ends every open stream with errType (shutdown past its grace).
func (w *Watchdog) AbortAll(errType string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, e := range w.watched {
		e.s.abort(errType)
	}
}

// watched is a stream the watchdog watches and when it is due for a check
// (on the watchdog's clock).
type watched struct {
	due int64
	s   *Stream
}

// clock is the watchdog's time: nanoseconds since it started.
func (w *Watchdog) clock() int64 { return int64(time.Since(w.base)) }

func (w *Watchdog) track(s *Stream) {
	w.mu.Lock()
	s.wdTracked, s.wdIndex = true, len(w.watched)
	w.watched = append(w.watched, watched{due: 0, s: s}) // checked at the next tick
	w.mu.Unlock()
}

func (w *Watchdog) untrack(s *Stream) {
	w.mu.Lock()
	if s.wdTracked {
		// The last entry takes s's place.
		i, last := s.wdIndex, len(w.watched)-1
		w.watched[i] = w.watched[last]
		w.watched[i].s.wdIndex = i
		w.watched[last] = watched{}
		w.watched = w.watched[:last]
		if c := cap(w.watched); c > 4096 && last < c/4 {
			// A burst of streams is over: give most of its room back.
			w.watched = append(make([]watched, 0, c/2), w.watched...)
		}
		s.wdIndex, s.wdTracked = 0, false
		if (s.hupClient.seq > 0 || s.hupUp.seq > 0) && w.hup != nil {
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
	ended := func(s *Stream) {
		if s.up != nil && s.up.raw != nil {
			endWakes.Add(1)
			_ = s.up.raw.Control(shutdownRead)
		}
	}
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		clock := w.clock()
		for i := range w.watched {
			if e := &w.watched[i]; clock >= e.due {
				e.due = w.check(e.s, buf[:], clock)
			}
		}
		if w.hup != nil {
			w.hup.poll(hungUp, ended)
		}
		w.mu.Unlock()
	}
}

// never is a due time that never comes.
const never = math.MaxInt64

// check checks s and returns when it is due next, on the clock of clock,
// the time now. It runs under w.mu, so s cannot be released meanwhile.
func (w *Watchdog) check(s *Stream, buf []byte, clock int64) int64 {
	w.checks++
	if s.reason.Load() != nil {
		return never // ending: its end untracks it
	}
	now := int64(time.Since(s.start))
	next := w.act(s, now, buf)
	if next == never {
		return never
	}
	return clock + max(next-now, 0)
}

// act does what s needs now (now: nanoseconds since its start) and
// returns when, in the same time, it may need something next: a time
// from which a check can act, never later (an upstream read since only
// makes it earlier than needed). now itself means at the next tick.
func (w *Watchdog) act(s *Stream, now int64, buf []byte) int64 {
	peek := int64(w.peekAfter)
	if s.waiting {
		// Before the response headers: the first-byte deadline bounds the
		// wait; only the client's presence is the watchdog's business.
		if now >= peek {
			w.watchClient(s, now, buf)
		}
		return w.clientDue(s, peek)
	}
	if ws := s.writeSince.Load(); ws != 0 {
		// A client write is in progress: the upstream is back-pressured by
		// the client, not silent. A client that takes no byte for the
		// idle timeout is given up as gone; before this check such a
		// stream was cut as upstream_timeout and its goroutine stayed
		// blocked in the write until the client disconnected.
		switch blocked := time.Duration(now - s.progressOf(ws, now)); {
		case s.route.IdleTimeout > 0 && blocked > s.route.IdleTimeout:
			s.abort(record.ErrClientClosed)
		case s.route.Timeout > 0 && time.Duration(now) > s.route.Timeout:
			s.abort(record.ErrUpstreamTimeout)
		}
		// The write may end any time, and silence then counts from the
		// read before it: check at every tick until it does.
		return now
	}
	last := s.lastRead.Load()
	if last == 0 {
		last = int64(s.rec.TTFB)
	}
	silent := time.Duration(now - last)
	switch {
	case s.route.IdleTimeout > 0 && silent > s.route.IdleTimeout:
		s.abort(record.ErrUpstreamTimeout)
		return never
	case s.route.Timeout > 0 && time.Duration(now) > s.route.Timeout:
		s.overTime.Store(true)
		s.abort(record.ErrUpstreamTimeout)
		return never
	}
	if silent >= w.peekAfter {
		w.watchClient(s, now, buf)
		w.watchUpstream(s)
	}
	next := w.clientDue(s, last+peek)
	if w.upstreamUnwatched(s) {
		next = min(next, last+peek)
	}
	if s.route.IdleTimeout > 0 {
		next = min(next, last+int64(s.route.IdleTimeout)+1)
	}
	if s.route.Timeout > 0 {
		next = min(next, int64(s.route.Timeout)+1)
	}
	return next
}

// watchUpstream adds the upstream socket of s, if copied in its poller's
// callback, to the hang-up set, once: there an upstream that closed right
// after its last bytes is seen (pollcopy.go).
func (w *Watchdog) watchUpstream(s *Stream) {
	if w.upstreamUnwatched(s) && !w.hup.arm(s, upstreamSide, s.upRaw()) {
		s.hupUp.seq = -1
	}
}

// upstreamUnwatched reports whether s's upstream socket is to join the
// hang-up set and has not yet: s's body is one copyPolled copies in the
// poller's callback.
func (w *Watchdog) upstreamUnwatched(s *Stream) bool {
	return s.hupUp.seq == 0 && w.hup != nil && s.pollable()
}

// shutdownRead shuts the socket fd down for reading: a wait for it
// returns, and a read finds what is left (the bytes, then the end or the
// peer's reset). The watchdog does so to an upstream socket its peer has
// closed, whose stream may wait for a readiness that will not come.
func shutdownRead(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RD) }

// endWakes counts the shutdowns of closed upstream sockets (tests).
var endWakes atomic.Int64

// clientDue returns when watchClient may next have something to do for s
// if its upstream stays silent from now on, silent enough from quiet: never
// once its client is in the hang-up set.
func (w *Watchdog) clientDue(s *Stream, quiet int64) int64 {
	if s.client == nil || s.hupClient.seq > 0 {
		return never
	}
	return max(quiet, s.nextPeek)
}

// watchClient makes sure a leaving client of s is noticed: its socket joins
// the hang-up set, once, or, where it cannot, is peeked at every peekAfter.
func (w *Watchdog) watchClient(s *Stream, now int64, buf []byte) {
	if s.hupClient.seq > 0 || now < s.nextPeek || s.client == nil {
		return
	}
	if s.hupClient.seq == 0 && w.hup != nil {
		if w.hup.arm(s, clientSide, s.hupConn()) {
			return
		}
		s.hupClient.seq = -1
	}
	s.nextPeek = now + int64(w.peekAfter)
	if clientGone(s.client, buf) {
		s.abort(record.ErrClientClosed)
	}
}

// hupSocket is one of a stream's sockets in the watchdog's hang-up set:
// its descriptor, and seq, the arming's number (0 while not in the set,
// -1 when it cannot be).
type hupSocket struct {
	fd, seq int32
}

// The sides of a stream whose sockets join the hang-up set.
const (
	clientSide   = 0
	upstreamSide = 1
)

// hupSock returns s's socket of side in the hang-up set.
func (s *Stream) hupSock(side int) *hupSocket {
	if side == clientSide {
		return &s.hupClient
	}
	return &s.hupUp
}

// upRaw returns the socket under s's upstream connection, nil without one.
func (s *Stream) upRaw() syscall.RawConn {
	if s.up == nil {
		return nil
	}
	return s.up.raw
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
// progressOf returns when (ns since start) the client last took a byte
// of the write in progress that began at ws (writeSince): the write's
// start, or later when the client socket's unsent bytes have fallen since.
// One write of a large read blocks until most of it has drained into a
// send buffer the kernel grows to megabytes, so a client reading steadily
// but slowly (a few hundred KB/s) was cut as gone at the idle timeout,
// taking bytes all along. The socket is looked at (one ioctl, unsentBytes)
// only once the write has blocked for half the idle timeout; where it
// cannot be, the write's start stands.
func (s *Stream) progressOf(ws, now int64) int64 {
	began := ws - 1
	idle := int64(s.route.IdleTimeout)
	if idle <= 0 || now-began <= idle/2 || s.client == nil {
		return began
	}
	if s.outqWrite != ws {
		s.outqWrite, s.outqSeen, s.outqFell = ws, -1, began
	}
	if q, ok := unsentBytes(s.client); ok {
		if s.outqSeen >= 0 && q < s.outqSeen {
			s.outqFell = now
		}
		s.outqSeen = q
	}
	return s.outqFell
}

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
// *tls.Conn's NetConn, the relay listener's connection wrapper).
func socketOf(c net.Conn) syscall.Conn {
	sc, _ := socket.Under[syscall.Conn](c)
	return sc
}
