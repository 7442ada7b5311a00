package upstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// Clients hands out one pooled keep-alive client per upstream host, so routes
// that share a host share its connections.
type Clients struct {
	mu      sync.Mutex
	clients map[string]*fasthttp.HostClient
}

// NewClients returns an empty client set.
func NewClients() *Clients {
	return &Clients{clients: map[string]*fasthttp.HostClient{}}
}

// clientOptions are the per-host settings; routes of one host must agree.
type clientOptions struct {
	connectTimeout time.Duration
	maxConns       int
	skipVerify     bool
}

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
	key := fmt.Sprintf("%s|%s|%v", u.Scheme, addr, o.skipVerify)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c, ok := cs.clients[key]; ok {
		return c
	}
	d := &dialer{timeout: o.connectTimeout}
	c := &fasthttp.HostClient{
		Addr:                          addr,
		IsTLS:                         isTLS,
		Dial:                          d.dial,
		MaxConns:                      o.maxConns,
		MaxConnWaitTimeout:            o.connectTimeout,
		MaxIdleConnDuration:           10 * time.Second,
		StreamResponseBody:            true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: false,
		ReadBufferSize:                16 << 10,
		WriteBufferSize:               16 << 10,
		MaxResponseBodySize:           0,
		SecureErrorLogMessage:         true,
	}
	if isTLS {
		c.TLSConfig = &tls.Config{
			ServerName:         u.Hostname(),
			InsecureSkipVerify: o.skipVerify, //nolint:gosec // opt-in per route, documented
			MinVersion:         tls.VersionTLS12,
		}
	}
	cs.clients[key] = c
	return c
}

// CloseIdle closes the idle connections of every client.
func (cs *Clients) CloseIdle() {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.clients {
		c.CloseIdleConnections()
	}
}

// dialer connects to an upstream and wraps the connection so that a Stream
// can find it again (see conn).
type dialer struct {
	timeout time.Duration
}

func (d *dialer) dial(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, d.timeout)
	if err != nil {
		return nil, &DialError{Err: err}
	}
	uc := &conn{Conn: c}
	uc.local.Addr = c.LocalAddr()
	uc.local.conn = uc
	return uc, nil
}

// DialError is a failure to connect to the upstream.
type DialError struct{ Err error }

func (e *DialError) Error() string { return "upstream: connect: " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// conn is an upstream connection. fasthttp keeps the net.Conn to itself, but
// it does record conn.LocalAddr() in the Response; conn returns an address
// that points back to the conn, which lets a Stream lift the first-byte
// deadline that fasthttp set for the response headers, so it does not cut the
// stream that follows.
type conn struct {
	net.Conn
	local connAddr
}

type connAddr struct {
	net.Addr
	conn *conn
}

func (c *conn) LocalAddr() net.Addr { return &c.local }

// connOf returns the upstream connection behind a response, if known.
func connOf(resp *fasthttp.Response) *conn {
	if a, ok := resp.LocalAddr().(*connAddr); ok {
		return a.conn
	}
	return nil
}

var errTLS = errors.New("upstream: tls")

// classifyOpenError maps a failure before the response headers to an error
// type and a status for the client.
func classifyOpenError(err error) (errType string, status int) {
	var de *DialError
	var te interface{ Timeout() bool }
	var certErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case errors.As(err, &de):
		if errors.As(de.Err, &te) && te.Timeout() {
			return record.ErrUpstreamConnect, fasthttp.StatusGatewayTimeout
		}
		return record.ErrUpstreamConnect, fasthttp.StatusBadGateway
	case errors.As(err, &certErr), errors.As(err, &recErr), errors.As(err, &alert), errors.Is(err, errTLS):
		return record.ErrUpstreamConnect, fasthttp.StatusBadGateway
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &te) && te.Timeout():
		return record.ErrUpstreamTimeout, fasthttp.StatusGatewayTimeout
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return record.ErrUpstreamConnect, fasthttp.StatusServiceUnavailable
	}
	return record.ErrUpstreamReset, fasthttp.StatusBadGateway
}
