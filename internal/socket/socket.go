// Package socket reads and writes TCP sockets with raw system calls.
//
// Go's net package enters every read and write through the scheduler's
// system-call bookkeeping (entersyscall/exitsyscall), made for calls that may
// block. A socket of the net package is non-blocking: a read or write returns
// at once, with bytes or EAGAIN. The bookkeeping still costs, and on a
// process that goes idle between requests it costs a lot: the runtime's
// monitor thread (sysmon) sleeps while every P is idle and the first system
// call afterwards wakes it, after which it polls every 20 µs for a
// millisecond. At a thousand requests a second the relay spent half of its
// context switches on that thread. A raw system call does not wake it.
//
// Blocking calls (files, fsync) keep Go's ordinary path: the monitor must
// see those, to hand their P to another thread. Under the race detector the
// ordinary calls are used here too, since they carry the detector's
// happens-before edges between a write into a socket and the read of it.
package socket

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// Conn is a TCP connection whose Read and Write use raw system calls. The
// rest (deadlines, Close, CloseWrite, SyscallConn) is the *net.TCPConn's.
// One Read and one Write may run at the same time, as on any net.Conn.
type Conn struct {
	*net.TCPConn
	raw syscall.RawConn
	rd  op
	wr  op
	x   exchange // WriteThenRead (exchange.go)
}

// op is the state of one read or write, handed to the poller's callback.
type op struct {
	p   []byte
	n   int
	err syscall.Errno
	fn  func(fd uintptr) bool // bound once, so that a call allocates nothing
}

// Wrap returns c read and written with raw system calls, or c itself when
// it is no *net.TCPConn.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	sc := &Conn{TCPConn: tc, raw: raw}
	sc.rd.fn = sc.readOnce
	sc.wr.fn = sc.writeSome
	return sc
}

// Read reads what has arrived into p, waiting for the socket to be readable
// (up to the read deadline) when nothing has.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rd.p, c.rd.n, c.rd.err = p, 0, 0
	err := c.raw.Read(c.rd.fn)
	n, errno := c.rd.n, c.rd.err
	c.rd.p = nil
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, c.opError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// emptyReads counts the reads that found nothing, for EmptyReads.
var emptyReads atomic.Int64

// EmptyReads returns how many reads of a Conn found nothing (EAGAIN, a
// system call spent before a wait) since the process started.
func EmptyReads() int64 { return emptyReads.Load() }

// readOnce is the poller's read callback: true when it read bytes, the end
// of the stream or an error; false (wait) on EAGAIN.
func (c *Conn) readOnce(fd uintptr) bool {
	for {
		n, errno := Read(fd, c.rd.p)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			emptyReads.Add(1)
			return false
		}
		c.rd.n, c.rd.err = n, errno
		return true
	}
}

// Write writes all of p, waiting for room in the socket (up to the write
// deadline) as often as it must.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wr.p, c.wr.n, c.wr.err = p, 0, 0
	err := c.raw.Write(c.wr.fn)
	n, errno := c.wr.n, c.wr.err
	c.wr.p = nil
	switch {
	case err != nil:
		return n, err
	case errno != 0:
		return n, c.opError("write", errno)
	}
	return n, nil
}

// writeSome is the poller's write callback: it writes until p is done (true),
// the socket is full (false: wait, then again) or an error (true).
func (c *Conn) writeSome(fd uintptr) bool {
	for c.wr.n < len(c.wr.p) {
		n, errno := Write(fd, c.wr.p[c.wr.n:])
		switch errno {
		case 0:
			c.wr.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.wr.err = errno
			return true
		}
	}
	return true
}

// opError is the error net.Conn would return for errno.
func (c *Conn) opError(op string, errno syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(),
		Err: os.NewSyscallError(op, errno)}
}

// Listener accepts connections read and written with raw system calls.
type Listener struct{ net.Listener }

// Accept waits for the next connection and wraps it (see Wrap).
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
