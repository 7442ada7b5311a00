package upstream

import (
	"bufio"
	"errors"
	"io"

	"github.com/stream-relay/stream-relay/record"
)

// Copying in the poller's callback. Go's RawConn.Read forgets whatever
// readiness the poller had seen before it is called, so its callback must
// try a read before it may wait: a stream that read its upstream's last
// event, wrote it to the client and called RawConn.Read again tried a read
// that found nothing (EAGAIN) before every wait. Measured at 500 streams/s
// of 20 events 5 ms apart, 12 of a stream's 25 upstream reads were such;
// nginx, which takes a read that returned less than it asked for as the
// socket drained and waits for the next readiness event, had none.
//
// An SSE body (never spliced, so its bytes always pass through the read
// buffer) is therefore copied within one RawConn.Read: the callback runs
// copyTo's steps, reading the descriptor itself (readBuf.inCB), and
// returns false to wait whenever a step would. Within one RawConn.Read
// the poller keeps readiness between calls of the callback, so after a
// short read (readBuf.drained) the next step waits without trying: bytes
// that arrive meanwhile make the wait return at once. Only a read into
// the callback's first call, or after an event that came with bytes the
// read had already taken, finds nothing.
//
// A detached stream's writer (WriteHijacked) copies so, and so does the
// server's goroutine (WriteTo): the writer is shallow (about 1.5 KiB deep
// where the copy begins), and the callback's frames (the poller's read,
// then the client write inside it) still fit a 4 KiB stack; the server's
// goroutine was grown to 8 KiB by the request's first phase, and stays
// there (app TestStreamStackAllocation, server: 8.3-10.0 KiB a stream,
// 9.9-10.9 copied the classic way). A goroutine kept shallow on purpose
// (handlers' small_stacks) copies the classic way: there the frames grew
// the stacks of 400 open streams from 2.2-3.2 to 5.3-7.3 KiB a stream,
// most of them doubled to 8 KiB.
//
// The trust in a short read has one hole: the peer's FIN or reset, when
// it arrived with the last bytes (before the poller reported them), comes
// with no readiness of its own, and the wait after that read would last
// until the idle timeout. A body that ends at the upstream's close is
// therefore not copied so (copyPolled); for the others such an end cuts
// the body, and the watchdog finds it: the upstream socket of a stream
// silent for PeekAfter joins its epoll set of hang-ups, like the client's,
// and one the peer closed is shut down for reading each tick until the
// stream ends, which wakes the wait (Watchdog.watchUpstream, shutdownRead).
// The read then returns what it would have: the bytes left, the end, or
// the reset.
//
// The callback holds the socket for as long as it runs, its client writes
// included, and Close waits for it: the watchdog's abort therefore shuts
// the socket down instead (conn.shutdown), which shows in the next wait or
// read (the end of the stream, which an aborted stream never takes for
// its body's end), or, for a stream that never waits (an upstream that
// floods), in the reason checked after each step.

// errNeedWait is readBuf.fill's answer inside the poller's callback when
// the socket has nothing (or was drained by the last read): the callback
// returns false, and the poller calls it again once bytes are there.
var errNeedWait = errors.New("upstream: wait for the socket")

// errAborted ends a copy in the poller's callback that the watchdog
// aborted while bytes kept coming.
var errAborted = errors.New("upstream: stream aborted")

// pollCopy is a Stream's state for copyInPoller: the writers copyTo got,
// the callback bound once (so passing it allocates nothing), and what the
// copy ended with.
type pollCopy struct {
	w   io.Writer
	bw  *bufio.Writer
	fn  func(fd uintptr) bool
	err error
}

// copyPolled is copyTo for a detached stream's writer and the server's
// goroutine (WriteTo): an SSE body from a plain TCP upstream is copied in
// the upstream socket's poller callback, unless the upstream's close ends
// it: a close that came with the body's last bytes is not reported apart
// from them, and such a body's healthy end would wait for the watchdog.
// Where the watchdog cannot watch upstream sockets (not Linux), nothing is
// copied so.
func (s *Stream) copyPolled(w io.Writer, bw *bufio.Writer) (int64, error) {
	if s.pollable() {
		return s.copyInPoller(w, bw)
	}
	return s.copyTo(w, bw)
}

// pollable reports whether copyPolled copies s's body in the poller's
// callback: an SSE body framed by its length or chunks, read from a plain
// TCP socket, where the watchdog can watch that socket.
func (s *Stream) pollable() bool {
	return watchesUpstreams && s.rb.raw != nil && s.rec.Kind == record.KindSSE && s.body.mode != bodyClose
}

// copyInPoller is copyTo for a stream read in the upstream socket's poller
// callback.
func (s *Stream) copyInPoller(w io.Writer, bw *bufio.Writer) (int64, error) {
	pc := &s.poll
	if pc.fn == nil {
		pc.fn = s.pollStep
	}
	pc.w, pc.bw, pc.err = w, bw, nil
	err := s.rb.raw.Read(pc.fn)
	s.rb.inCB = false // set by each call of pollStep
	if err == nil {
		err = pc.err
	} else {
		// The wait failed: the connection was closed (the watchdog's
		// abort) or its deadline passed, as a read outside would have.
		s.restoreWriter()
		s.fail(record.ErrUpstreamReset)
	}
	pc.w, pc.bw, pc.err = nil, nil, nil
	return s.copied, err
}

// pollStep is the upstream poller's callback: it runs copyTo's steps on
// the descriptor fd until one would wait (false) or copyTo is done (true,
// its error in s.poll.err).
func (s *Stream) pollStep(fd uintptr) bool {
	pc := &s.poll
	rb := &s.rb
	rb.fd, rb.inCB, rb.drained = fd, true, false
	for {
		stop, err := s.copyStep(pc.w, pc.bw)
		switch {
		case stop:
			pc.err = err
			return true
		case err == errNeedWait:
			return false
		case s.reason.Load() != nil:
			s.restoreWriter()
			pc.err = errAborted
			return true
		}
	}
}
