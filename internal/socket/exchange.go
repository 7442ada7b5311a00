package socket

import (
	"io"
	"syscall"
)

// A request's answer. After a Write, a Read's first try nearly always finds
// nothing: the peer has not answered yet. Go's RawConn.Read forgets the
// socket's readiness when it is called, so Read must try before it may
// wait, and that try is a system call spent for nothing (EAGAIN) on every
// request. WriteThenRead writes inside the read's poller callback instead
// and then waits without trying: the readiness an answer brings, however
// soon after the write it comes, is kept within that one RawConn.Read.

// exchange is the state of one WriteThenRead, handed to the poller's
// callback.
type exchange struct {
	out     []byte
	sent    int
	reading bool // out went out whole: the callback reads
	full    bool // the socket took part of out: Write sends the rest
	fn      func(fd uintptr) bool
}

// WriteThenRead writes out and reads what comes back into p, as Write then
// Read would, without a read before the first wait. Bytes that were in the
// socket before the call are not seen until more come (their readiness is
// gone): use it only where none can be, such as on a connection whose
// last answer was read to its end. It must not run alongside a Write or a
// Read of c. A socket too full for all of out (a peer not reading) has the
// rest written by Write, and then Read.
func (c *Conn) WriteThenRead(out, p []byte) (int, error) {
	x := &c.x
	if x.fn == nil {
		x.fn = c.exchangeStep
	}
	x.out, x.sent, x.reading, x.full = out, 0, false, false
	c.rd.p, c.rd.n, c.rd.err = p, 0, 0
	err := c.raw.Read(x.fn)
	n, errno, full, sent := c.rd.n, c.rd.err, x.full, x.sent
	c.rd.p, x.out = nil, nil
	switch {
	case err != nil:
		return 0, err
	case errno != 0 && !x.reading:
		return 0, c.opError("write", errno)
	case full:
		if _, err := c.Write(out[sent:]); err != nil {
			return 0, err
		}
		return c.Read(p)
	case errno != 0:
		return n, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// exchangeStep is WriteThenRead's poller callback: its first call writes
// out and asks to wait (false); the next ones read as readOnce does.
func (c *Conn) exchangeStep(fd uintptr) bool {
	x := &c.x
	if x.reading {
		return c.readOnce(fd)
	}
	for x.sent < len(x.out) {
		n, errno := Write(fd, x.out[x.sent:])
		switch errno {
		case 0:
			x.sent += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			x.full = true
			return true
		default:
			c.rd.err = errno
			return true
		}
	}
	x.reading = true
	return false
}
