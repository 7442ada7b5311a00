package app

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/handlers"
	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/stream-relay/stream-relay/internal/ratelog"
	"github.com/stream-relay/stream-relay/internal/socket"
	"github.com/valyala/fasthttp"
)

// edgeListener wraps the relay's listener so that each connection is an
// edgeConn: the first read of every request is shown to
// handlers.CheckRequestStart, which catches what fasthttp would wait on
// until read_timeout (a TLS ClientHello on the plain port, bare-LF line
// ends), and keeps the head of a request fasthttp will refuse for a control
// character in a header, to log it. It costs one small struct per
// connection and one check per request; reads within a request pass
// straight through.
type edgeListener struct {
	net.Listener
	retry *acceptRetry
	set   *edgeSet // the open connections (edgeset.go); nil: not kept
}

// Accept wraps the next connection. An accept that fails for want of a
// resource (acceptRetryable) is tried again after a pause: fasthttp takes
// any error but a timeout for the listener's end, and the relay shut down
// when a burst of connections used up its file descriptors.
func (l edgeListener) Accept() (net.Conn, error) {
	var pause time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			return l.wrap(c), nil
		}
		if !acceptRetryable(err) || l.retry == nil {
			return nil, err
		}
		pause = min(max(2*pause, minAcceptPause), maxAcceptPause)
		l.retry.failed(err)
		time.Sleep(pause)
	}
}

// wrap makes c an edgeConn.
func (l edgeListener) wrap(c net.Conn) net.Conn {
	c = socket.Wrap(c) // when the listener did not (Serve with a plain one)
	ec := &edgeConn{Conn: c, fresh: true, start: true}
	l.set.add(ec)
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			ec.raw = raw
			ec.rawFn = ec.rawPrefetch
		}
	}
	if tc, ok := c.(*tls.Conn); ok {
		// fasthttp finds TLS by the Handshake/ConnectionState methods
		// (IsTLS, ALPN); keep them visible.
		return &edgeTLSConn{edgeConn: ec, tls: tc}
	}
	return ec
}

// The pause before an accept is tried again doubles from minAcceptPause up
// to maxAcceptPause, as net/http's server does: connections wait in the
// kernel's backlog meanwhile, and the ones being served go on.
const (
	minAcceptPause = 5 * time.Millisecond
	maxAcceptPause = time.Second
)

// acceptRetryable reports whether a failed accept says the process or the
// system is short of a resource for the moment (file descriptors, memory,
// socket buffers), or the connection was gone before it was taken: the
// listener itself is fine.
func acceptRetryable(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED)
}

// acceptRetry counts and logs the accepts tried again: one warning per
// acceptLogEvery at most, with the failures since the last.
type acceptRetry struct {
	log   *slog.Logger
	count func() // the failures' counter (relay_accept_errors_total)
	every ratelog.Every
}

const acceptLogEvery = 10 * time.Second

func (r *acceptRetry) failed(err error) {
	r.count()
	if ok, suppressed := r.every.Allow(acceptLogEvery); ok {
		r.log.Warn("accepting a connection failed for want of a resource; new connections wait in the backlog, served ones go on",
			"err", err, "failures_since_last", suppressed)
	}
}

// edgeConn is a client connection that knows when a read begins a request:
// at the start of the connection and after the server wrote (a response;
// fasthttp reads a request's whole body before its handler runs, so the
// next read after a response is the next request's head).
type edgeConn struct {
	net.Conn
	fresh bool // the next read begins a request
	start bool // nothing was read yet on the connection
	// began is when (mono) the read that began the current request
	// returned: a request that had begun arriving when the relay began to
	// drain is still served (RequestBegan).
	began int64
	// busy is set from the read that began a request until an answer is
	// written: the drain's sweep of detached connections leaves such a
	// connection to finish its request (Idle), from another goroutine.
	busy atomic.Bool
	// tunnel is set (before the upgrade, by the request's goroutine) when
	// the connection becomes a WebSocket session: reads and writes then
	// pass straight through, from two goroutines.
	tunnel bool
	// badHead is the head handlers.CheckRequestStart kept from the read
	// that began the current request (nil almost always): the relay's
	// error handler takes it to log a request fasthttp refused for a
	// control character in a header.
	badHead *handlers.BadHead
	// pending is the refusal (handlers.CheckRequestStart) of a request
	// pipelined behind others in the read that began them: written, and
	// the connection ended, once the server asks for bytes past them.
	pending []byte
	// kept is the prefetch buffer of the read that began the current
	// request, kept once its bytes were handed out until the request
	// reaches a handler or the error handler (keptN bytes): a request
	// whose body does not arrive in time (408) is then logged with its
	// head (handlers.ReadError), which fasthttp has reset by then.
	kept  *prefetchBuf
	keptN int
	// hijackEnd ends a detached stream whose hijack handler fasthttp never
	// ran (handlers.hijackGuarded); the server's ConnState runs it when the
	// connection closes (closeGuarded).
	hijackEnd atomic.Pointer[func()]
	// set is the open connections it belongs to (edgeset.go); Close
	// leaves it.
	set *edgeSet
	// linger makes Close end the sending side and read what the client
	// still sends first (linger.go).
	linger atomic.Bool

	// The server (with ReduceMemoryUsage) waits for a request with a
	// one-byte read, holding no buffer. The connection reads what arrived
	// into a pooled buffer instead, checks it whole, and hands it out over
	// the next reads; on a plain TCP socket the read happens in the
	// poller's callback, so an idle connection holds no buffer either.
	raw      syscall.RawConn
	rawFn    func(fd uintptr) bool // rawPrefetch, bound once
	pre      *prefetchBuf
	preOff   int
	preN     int
	rawN     int
	rawErrno error
}

// prefetchSize is the most a request's first read takes, as much as the
// server's own read buffer would.
const prefetchSize = 8 << 10

type prefetchBuf struct{ b [prefetchSize]byte }

var prefetchPool = sync.Pool{New: func() any { return new(prefetchBuf) }}

// NetConn returns the wrapped connection: the watchdog peeks at the TCP
// socket beneath.
func (c *edgeConn) NetConn() net.Conn { return c.Conn }

// RawSocket returns the plain TCP socket beneath, nil over TLS: response
// bytes the relay does not keep are spliced to it (upstream/splice.go).
func (c *edgeConn) RawSocket() syscall.RawConn { return c.raw }

// Read reads from the connection and, at the start of a request, has the
// bytes checked; a refused request is answered here and the connection
// reported as closed, which fasthttp takes without answering again.
func (c *edgeConn) Read(p []byte) (int, error) {
	if c.pre != nil {
		return c.takePrefetched(p), nil
	}
	if c.pending != nil {
		// The requests read before the refused one are answered: the
		// server asks for the next.
		resp := c.pending
		c.pending = nil
		c.refuse(resp)
		return 0, io.EOF
	}
	if c.fresh {
		c.DropHead()
		if len(p) < 64 {
			return c.readPrefetch(p)
		}
	}
	n, err := c.Conn.Read(p)
	if !c.fresh || n <= 0 {
		return n, err
	}
	start := c.start
	c.fresh, c.start, c.began = false, false, mono.Now()
	c.busy.Store(true)
	resp, cut, bad := handlers.CheckRequestStart(p[:n], start)
	if resp != nil {
		if cut == 0 {
			c.refuse(resp)
			return 0, io.EOF
		}
		c.pending, n = resp, cut // the requests before it are served first
	}
	c.badHead = bad
	return n, err
}

// RequestBegan returns when (mono) the read that began the connection's
// current request returned.
func (c *edgeConn) RequestBegan() int64 { return c.began }

// Idle reports whether the connection waits for a request: none begun
// since the last answer was written. Safe from any goroutine.
func (c *edgeConn) Idle() bool { return !c.busy.Load() }

// TakeBadHead returns, once, the head handlers.CheckRequestStart kept from
// the read that began the connection's current request.
func (c *edgeConn) TakeBadHead() *handlers.BadHead {
	bh := c.badHead
	c.badHead = nil
	return bh
}

// Tunneled makes the connection a plain pipe for a WebSocket session.
func (c *edgeConn) Tunneled() { c.tunnel, c.fresh, c.pending = true, false, nil }

// readPrefetch reads what arrived of a request into a pooled buffer,
// checks it and hands out the first of it.
func (c *edgeConn) readPrefetch(p []byte) (int, error) {
	var n int
	var err error
	if c.raw != nil {
		c.rawN, c.rawErrno = 0, nil
		if err = c.raw.Read(c.rawFn); err == nil {
			n, err = c.rawN, c.rawErrno
		}
	} else {
		c.pre = prefetchPool.Get().(*prefetchBuf)
		n, err = c.Conn.Read(c.pre.b[:])
	}
	if n <= 0 {
		c.releasePrefetch()
		if err == nil {
			err = io.EOF
		}
		return 0, err
	}
	c.preOff, c.preN = 0, n
	start := c.start
	c.fresh, c.start, c.began = false, false, mono.Now()
	c.busy.Store(true)
	resp, cut, bad := handlers.CheckRequestStart(c.pre.b[:n], start)
	if resp != nil {
		if cut == 0 {
			c.releasePrefetch()
			c.refuse(resp)
			return 0, io.EOF
		}
		c.pending, c.preN = resp, cut // the requests before it are served first
	}
	c.badHead = bad
	return c.takePrefetched(p), nil
}

// rawPrefetch runs in the poller with the socket's descriptor: it reads
// into a pooled buffer, or gives the buffer back and waits when nothing
// has arrived.
func (c *edgeConn) rawPrefetch(fd uintptr) bool {
	if c.pre == nil {
		c.pre = prefetchPool.Get().(*prefetchBuf)
	}
	for {
		n, errno := socket.Read(fd, c.pre.b[:])
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			c.releasePrefetch()
			return false
		}
		c.rawN = n
		if errno != 0 {
			c.rawErrno = os.NewSyscallError("read", errno)
		}
		return true
	}
}

// takePrefetched copies prefetched bytes into p; the buffer, handed out
// whole, is kept as the request's head (KeptHead).
func (c *edgeConn) takePrefetched(p []byte) int {
	n := copy(p, c.pre.b[c.preOff:c.preN])
	c.preOff += n
	if c.preOff == c.preN {
		c.kept, c.keptN, c.pre = c.pre, c.preN, nil
	}
	return n
}

// KeptHead returns the bytes of the read that began the connection's
// current request, valid until DropHead; nil once it reached a handler,
// or when the read was not a prefetch (handlers.ReadError).
func (c *edgeConn) KeptHead() []byte {
	if c.kept == nil {
		return nil
	}
	return c.kept.b[:c.keptN]
}

// GuardHijack keeps f to run if the server closes the connection before the
// hijack handler clears it (nil).
func (c *edgeConn) GuardHijack(f func()) {
	if f == nil {
		c.hijackEnd.Store(nil)
		return
	}
	c.hijackEnd.Store(&f)
}

// closeGuarded is the server's ConnState hook: a connection closed with a
// hijack still guarded runs its guard.
func closeGuarded(c net.Conn, st fasthttp.ConnState) {
	if st != fasthttp.StateClosed {
		return
	}
	ec := edgeOf(c)
	if ec == nil {
		return
	}
	if f := ec.hijackEnd.Swap(nil); f != nil {
		(*f)()
	}
}

// edgeOf returns the edgeConn c is, or nil.
func edgeOf(c net.Conn) *edgeConn {
	switch v := c.(type) {
	case *edgeConn:
		return v
	case *edgeTLSConn:
		return v.edgeConn
	}
	return nil
}

// DropHead gives the kept head's buffer back to its pool.
func (c *edgeConn) DropHead() {
	if c.kept != nil {
		prefetchPool.Put(c.kept)
		c.kept = nil
	}
}

func (c *edgeConn) releasePrefetch() {
	if c.pre != nil {
		prefetchPool.Put(c.pre)
		c.pre = nil
	}
}

// responseContinue is what fasthttp writes to a request with Expect:
// 100-continue before it reads the body: the body is no new request.
var responseContinue = []byte("HTTP/1.1 100 ")

// Write writes to the connection; what follows a response is a new request.
func (c *edgeConn) Write(p []byte) (int, error) {
	if !c.tunnel && !c.fresh && !bytes.HasPrefix(p, responseContinue) {
		c.fresh = true
		c.busy.Store(false)
	}
	return c.Conn.Write(p)
}

// refuse writes resp and ends the connection's sending side, so that the
// client reads the answer and then the end of the stream.
func (c *edgeConn) refuse(resp []byte) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Conn.Write(resp); err != nil {
		return
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// edgeTLSConn is an edgeConn over TLS that still looks like one to fasthttp.
type edgeTLSConn struct {
	*edgeConn
	tls *tls.Conn
}

// Handshake runs the TLS handshake (fasthttp calls it for ALPN).
func (c *edgeTLSConn) Handshake() error { return c.tls.Handshake() }

// ConnectionState returns the TLS connection state.
func (c *edgeTLSConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }
