package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/stream-relay/stream-relay/internal/socket"
	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// Clients hands out one pooled keep-alive fasthttp.HostClient per upstream
// host, so routes that share a host share its connections. The relay uses
// the client's connection pool (dialing, limits, idle cleanup) and writes
// requests with fasthttp, but reads responses itself (see bodyReader).
type Clients struct {
	mu      sync.Mutex
	clients map[string]*fasthttp.HostClient
	// wsConns count the open upstream connections of each ws route (by
	// name and upstream), against its max_conns: kept here, they outlive
	// a reload's new routes, as the HTTP routes' pools do.
	wsConns map[string]*atomic.Int64
	// dials ends with AbortDials: the connects of HTTP routes (dialer) and
	// the handshakes of WebSocket routes (DialWS) wait under it.
	dials context.Context
	abort context.CancelFunc
}

// NewClients returns an empty client set.
func NewClients() *Clients {
	cs := &Clients{clients: map[string]*fasthttp.HostClient{}}
	cs.dials, cs.abort = context.WithCancel(context.Background())
	return cs
}

// wsCounter returns the count of open upstream connections of the ws route
// named key (its name and upstream), made at first use.
func (cs *Clients) wsCounter(key string) *atomic.Int64 {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.wsConns == nil {
		cs.wsConns = map[string]*atomic.Int64{}
	}
	n := cs.wsConns[key]
	if n == nil {
		n = new(atomic.Int64)
		cs.wsConns[key] = n
	}
	return n
}

// AbortDials ends every connect (and WebSocket handshake) in progress, and
// fails every later one, with ErrDialAborted: at shutdown, past the grace
// period, a request still connecting (connect_timeout: 10 s by default; a
// handshake, first_byte_timeout) would otherwise go on after the storage
// closed, and its row be lost. Such a request is answered 503
// shutting_down.
func (cs *Clients) AbortDials() { cs.abort() }

// ErrDialAborted is the connect error after AbortDials.
var ErrDialAborted = errors.New("upstream: connect given up: the relay is shutting down")

// clientOptions are the per-host settings; routes of one host must agree.
type clientOptions struct {
	connectTimeout time.Duration
	maxConns       int
	skipVerify     bool
}

// headReaderSize is the buffer a response head is read with: the largest
// head an upstream may send.
const headReaderSize = 16 << 10

var headReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, headReaderSize) }}

func (cs *Clients) get(u *url.URL, o clientOptions) *fasthttp.HostClient {
	isTLS := u.Scheme == "https"
	addr := u.Host
	if u.Port() == "" {
		if isTLS {
			addr += ":443"
		} else {
			addr += ":80"
		}
	}
	// One pool per host and connection settings: routes to one host with
	// the same settings share connections, and one with a max_conns or a
	// connect_timeout of its own gets them (as the first route to reach
	// the host used to fix them for all; a reload that changes them now
	// takes effect, with a new pool).
	key := fmt.Sprintf("%s|%s|%v|%d|%d", u.Scheme, addr, o.skipVerify, o.maxConns, o.connectTimeout)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c, ok := cs.clients[key]; ok {
		return c
	}
	d := &dialer{timeout: o.connectTimeout, abort: cs.dials.Done()}
	if isTLS {
		d.tls = &tls.Config{
			ServerName:         u.Hostname(),
			InsecureSkipVerify: o.skipVerify, //nolint:gosec // opt-in per route, documented
			MinVersion:         tls.VersionTLS12,
		}
	}
	c := &fasthttp.HostClient{
		Addr:                addr,
		DialTimeout:         d.dial, // TLS included: fasthttp sees a plain connection
		MaxConns:            o.maxConns,
		MaxConnWaitTimeout:  o.connectTimeout,
		MaxIdleConnDuration: 10 * time.Second,
		WriteBufferSize:     8 << 10,
	}
	cs.clients[key] = c
	return c
}

// Keep forgets the clients none of routes uses (a reload's new routes):
// each reload that changed a host or its connection settings added a pool,
// and none was ever dropped. A forgotten client's idle connections are
// closed; requests still on it (begun on the old routes) finish, their
// connections closed as they end.
func (cs *Clients) Keep(routes []*Route) {
	used := map[*fasthttp.HostClient]bool{}
	for _, r := range routes {
		if r.pool == nil {
			continue
		}
		for _, t := range r.pool.targets {
			used[t.route.client] = true
		}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for k, c := range cs.clients {
		if !used[c] {
			delete(cs.clients, k)
			c.CloseIdleConnections()
		}
	}
}

// CloseIdle closes the idle connections of every client.
func (cs *Clients) CloseIdle() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.clients {
		c.CloseIdleConnections()
	}
}

// dialer connects to an upstream (TLS too) and wraps the connection with
// its own read buffer, which lives as long as the connection.
type dialer struct {
	timeout time.Duration
	tls     *tls.Config
	abort   <-chan struct{} // Clients.AbortDials
}

// dial connects on a goroutine of its own, which ends with it. The call
// chain of a connect is deep (the dialer, then the socket's deadline timer;
// a TLS handshake's crypto more so): run on the request's goroutine, it
// grew that goroutine's stack from 8 to 16 KiB (32 with TLS), held by each
// open stream until a garbage collection shrinks it back, and by the
// process's resident memory after. A stream that needs a new upstream
// connection is one that waits on the network anyway; the hand-off costs
// a few microseconds beside it.
//
// timeout is what fasthttp passes on from AcquireConn: the request's own
// time left (Route.connectBudget) when that is shorter than the dialer's
// connect timeout; 0 or longer, the connect timeout.
func (d *dialer) dial(addr string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 || timeout > d.timeout {
		timeout = d.timeout
	}
	select {
	case <-d.abort:
		return nil, ErrDialAborted
	default:
	}
	done := make(chan dialResult, 1)
	go func() {
		c, err := d.connect(addr, timeout)
		done <- dialResult{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-d.abort:
		go func() { // the connect's end, closed unused
			if r := <-done; r.c != nil {
				_ = r.c.Close()
			}
		}()
		return nil, ErrDialAborted
	}
}

type dialResult struct {
	c   net.Conn
	err error
}

// connect is dial on the calling goroutine.
func (d *dialer) connect(addr string, timeout time.Duration) (net.Conn, error) {
	deadline := time.Now().Add(timeout) // the TCP connect and the TLS handshake together
	began := mono.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, &DialError{Err: err}
	}
	rtt := time.Duration(mono.Now() - began)
	c = socket.Wrap(c) // beneath TLS too
	var beneath syscall.RawConn
	if d.tls != nil {
		if sc, ok := c.(syscall.Conn); ok {
			beneath, _ = sc.SyscallConn()
		}
		tc := tls.Client(c, d.tls)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := tc.HandshakeContext(ctx)
		cancel()
		if err != nil {
			_ = c.Close()
			return nil, &DialError{Err: err}
		}
		c = tc
	}
	uc := &conn{Conn: c, rtt: rtt, tlsTCP: beneath, born: mono.Now()}
	if sc, ok := c.(syscall.Conn); ok { // plain TCP (a *tls.Conn is none)
		uc.raw, _ = sc.SyscallConn()
	}
	uc.sock, _ = c.(*socket.Conn)
	return uc, nil
}

// maxConnAge is how long an upstream connection is reused: after it, it is
// closed once its answer ended. A route used without a pause kept its
// connections for good, and with them the address its host name had when
// they were made: a changed DNS answer (a provider moving its endpoint, a
// service's new pods) was never followed, a reload neither (pools are
// kept). nginx's keepalive_time is an hour; five minutes costs a connect
// (and a TLS handshake) per connection every five minutes. Tests shorten
// it.
var maxConnAge = 5 * time.Minute

// DialError is a failure to connect to the upstream (TCP or TLS).
type DialError struct{ Err error }

func (e *DialError) Error() string { return "upstream: connect: " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// conn is an upstream connection with its buffered reader. It counts the
// bytes read from the socket, which tells a failed first attempt on a reused
// connection (nothing came back: safe to retry) from a real answer.
type conn struct {
	net.Conn
	br  *bufio.Reader   // while a response head is read; pooled
	raw syscall.RawConn // a plain TCP connection's socket, for readBuf
	// tlsTCP is the TCP socket beneath a TLS connection, for
	// unreadWaiting; nil for plain TCP.
	tlsTCP syscall.RawConn
	sock   *socket.Conn  // the same connection, nil over TLS
	in     int64         // bytes read from the socket
	uses   int           // requests sent on this connection
	rtt    time.Duration // how long its TCP connect took: about one round trip
	born   int64         // when (mono) it was connected (maxConnAge)
	// unsent is a request that goes out with the first read of its
	// answer (heldrequest.go).
	unsent []byte
	// For unreadWaiting: its callback, bound once, its buffer and answer.
	peekFn  func(fd uintptr)
	peekBuf [1]byte
	peeked  bool
}

// unreadWaiting reports whether a connection back from the pool has bytes
// waiting, or its end: bytes that came after its last answer ended (an
// upstream that sent more than its framing said, a 204 with a body, a 408
// sent on an idle connection before closing it) would be read as the next
// request's answer, another client's, and a closed one would fail it. One
// non-blocking peek at the TCP socket; over TLS also what the TLS layer
// holds already decrypted or in whole records (tlsHolds).
func (c *conn) unreadWaiting() bool {
	sock := c.raw
	if c.tlsTCP != nil {
		sock = c.tlsTCP
	}
	if sock == nil {
		return false
	}
	if c.peekFn == nil {
		c.peekFn = c.peekOnce
	}
	c.peeked = false
	_ = sock.Control(c.peekFn)
	if c.peeked || c.tlsTCP == nil {
		return c.peeked
	}
	return c.tlsHolds()
}

// tlsHolds reports whether the TLS layer of c holds bytes of an answer
// nobody asked for, or the connection's end: a record read with the last
// answer's end whose plaintext was not all taken, or a whole record read
// with it. A read with its deadline already passed hands those out
// without touching the socket (its timeout is no lasting error of the TLS
// connection's).
func (c *conn) tlsHolds() bool {
	_ = c.Conn.SetReadDeadline(time.Unix(1, 0))
	n, err := c.Conn.Read(c.peekBuf[:])
	_ = c.Conn.SetReadDeadline(time.Time{})
	var ne net.Error
	return n > 0 || !errors.As(err, &ne) || !ne.Timeout()
}

func (c *conn) peekOnce(fd uintptr) {
	_, errno := socket.Peek(fd, c.peekBuf[:])
	c.peeked = errno == 0 // bytes, or the end (0 bytes); EAGAIN: none
}

// acquireReader gives c a pooled reader for a response head.
func (c *conn) acquireReader() {
	if c.br == nil {
		c.br = headReaders.Get().(*bufio.Reader)
		c.br.Reset(c)
	}
}

// releaseReader returns the head's reader; what it still buffered must
// have been taken.
func (c *conn) releaseReader() {
	if c.br != nil {
		c.br.Reset(nil)
		headReaders.Put(c.br)
		c.br = nil
	}
}

// shutdown ends c both ways for the watchdog, from another goroutine: a
// wait or read on it returns (the end of the stream), and the upstream
// sees the end of the request. A plain TCP socket is shut down, not
// closed: Close waits until every read in progress on it has returned,
// and a stream copied in the poller's callback (pollcopy.go) is inside one
// for as long as its client write blocks, which the watchdog unblocks only
// after this. The stream closes c when it ends. Over TLS, c is closed.
func (c *conn) shutdown() {
	if c.raw == nil {
		_ = c.Close()
		return
	}
	_ = c.raw.Control(shutdownBoth)
}

func shutdownBoth(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_RDWR) }

func (c *conn) Read(p []byte) (int, error) {
	var n int
	var err error
	if out := c.unsent; out != nil {
		c.unsent = nil
		n, err = c.sock.WriteThenRead(out, p)
	} else {
		n, err = c.Conn.Read(p)
	}
	c.in += int64(n)
	return n, err
}

// classifyOpenError maps a failure before the response headers to an error
// type and a status for the client.
func classifyOpenError(err error) (errType string, status int) {
	var de *DialError
	var te interface{ Timeout() bool }
	switch {
	case errors.Is(err, ErrDialAborted):
		return record.ErrShuttingDown, fasthttp.StatusServiceUnavailable
	case errors.As(err, &de):
		if errors.As(de.Err, &te) && te.Timeout() {
			return record.ErrUpstreamConnect, fasthttp.StatusGatewayTimeout
		}
		return record.ErrUpstreamConnect, fasthttp.StatusBadGateway
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return record.ErrUpstreamConnect, fasthttp.StatusServiceUnavailable
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &te) && te.Timeout():
		return record.ErrUpstreamTimeout, fasthttp.StatusGatewayTimeout
	}
	return record.ErrUpstreamReset, fasthttp.StatusBadGateway
}
