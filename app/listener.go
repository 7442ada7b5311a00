package app

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"time"

	"github.com/stream-relay/stream-relay/handlers"
)

// edgeListener wraps the relay's listener so that each connection is an
// edgeConn: the first read of every request is shown to
// handlers.CheckRequestStart, which catches what fasthttp would wait on
// until read_timeout (a TLS ClientHello on the plain port, bare-LF line
// ends). It costs one small struct per connection and one check per
// request; reads within a request pass straight through.
type edgeListener struct {
	net.Listener
}

// Accept wraps the next connection.
func (l edgeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ec := &edgeConn{Conn: c, fresh: true, start: true}
	if tc, ok := c.(*tls.Conn); ok {
		// fasthttp finds TLS by the Handshake/ConnectionState methods
		// (IsTLS, ALPN); keep them visible.
		return &edgeTLSConn{edgeConn: ec, tls: tc}, nil
	}
	return ec, nil
}

// edgeConn is a client connection that knows when a read begins a request:
// at the start of the connection and after the server wrote (a response;
// fasthttp reads a request's whole body before its handler runs, so the
// next read after a response is the next request's head).
type edgeConn struct {
	net.Conn
	fresh bool // the next read begins a request
	start bool // nothing was read yet on the connection
}

// NetConn returns the wrapped connection: the watchdog peeks at the TCP
// socket beneath.
func (c *edgeConn) NetConn() net.Conn { return c.Conn }

// Read reads from the connection and, at the start of a request, has the
// bytes checked; a refused request is answered here and the connection
// reported as closed, which fasthttp takes without answering again.
func (c *edgeConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.fresh || n <= 0 {
		return n, err
	}
	start := c.start
	c.fresh, c.start = false, false
	if resp := handlers.CheckRequestStart(p[:n], start); resp != nil {
		c.refuse(resp)
		return 0, io.EOF
	}
	return n, err
}

// responseContinue is what fasthttp writes to a request with Expect:
// 100-continue before it reads the body: the body is no new request.
var responseContinue = []byte("HTTP/1.1 100 ")

// Write writes to the connection; what follows a response is a new request.
func (c *edgeConn) Write(p []byte) (int, error) {
	if !c.fresh && !bytes.HasPrefix(p, responseContinue) {
		c.fresh = true
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
