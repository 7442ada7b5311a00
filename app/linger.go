package app

import (
	"io"
	"time"
)

// A refusal written while the client is still sending its request (a body
// over server.max_body_bytes: 413; a header block too large: 431) was
// followed at once by the server's close: the kernel, with the client's
// upload unread in its buffer, answered with a reset, and the client
// (Node's fetch, the official SDKs) threw the answer away unread and saw
// ECONNRESET, half the time or more, and retried the whole upload. As
// nginx's lingering_close does, such a connection's close first ends the
// sending side (the client reads the answer, then the end of the stream)
// and reads and discards what the client still sends, for a bounded time
// and number of bytes, before it closes.

// lingerTime and lingerBytes bound the discarding: an upload that goes on
// longer gets the reset after all.
const (
	lingerTime  = 5 * time.Second
	lingerBytes = 128 << 20
)

// Linger makes the connection's close linger (handlers call it on a
// refusal that leaves the request's bytes unread).
func (c *edgeConn) Linger() { c.linger.Store(true) }

// Close closes the connection, lingering first when Linger was called.
func (c *edgeConn) Close() error {
	if c.set != nil {
		c.set.remove(c) // whoever closes it: the server, a hijacker, a refusal
	}
	if c.linger.Swap(false) {
		c.drainUpload()
	}
	return c.Conn.Close()
}

// drainUpload ends the sending side and discards what the client sends
// until it ends its own, lingerTime passes or lingerBytes came.
func (c *edgeConn) drainUpload() {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
	buf := prefetchPool.Get().(*prefetchBuf)
	defer prefetchPool.Put(buf)
	_, _ = io.CopyBuffer(io.Discard, io.LimitReader(onlyReader{c.Conn}, lingerBytes), buf.b[:])
}

// onlyReader hides a reader's other methods from io.CopyBuffer (a
// WriterTo would not use the buffer).
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }
