package upstream

import (
	"bufio"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/internal/socket"
	"github.com/stream-relay/stream-relay/record"
)

// Splicing. A response whose bytes the record does not keep (a raw route
// with capture: meta, the default for audio, or any raw stream past its
// capture limit) has no use for them in the process: only their lengths
// and arrival times are stored. Long runs of such bytes (the rest of a
// fixed-length body, or of a chunk of 96 KiB or more) then move from the
// upstream's socket to the client's with splice(2) through a pipe, and are
// never copied into user space and back. With 5 MiB audio responses in a
// Content-Length body, that halved the relay's CPU per response.
//
// The client's response stays chunked. A spliced run goes out as one
// chunk: its size line is written into the pipe before the data (with any
// decoded bytes that came just before the run, so they need no write of
// their own), and its closing CRLF is owed until the next write, which
// carries it in front (crlfOwed). Each arrival is spliced out at once, so
// a run is never held back, and is stamped in the record as a chunk, as a
// read would be.

// minSpliceRun is the shortest run of a fixed-length body worth splicing:
// shorter ones cost less copied than in the splice's extra system calls.
const minSpliceRun = 16 << 10

// minSpliceChunk is the shortest chunk worth splicing. Each spliced chunk
// costs two system calls more than a copy (reading the framing after it on
// its own, writing its size line into the pipe), where one read could have
// taken several chunks. Measured with 5 MiB of audio (16 connections,
// 3 rounds): in 32 KiB chunks splicing cost 6-14% more CPU, in 64 KiB
// chunks it was even, in 128 KiB chunks it saved a third.
const minSpliceChunk = 96 << 10

// maxSpliceRun bounds one spliced chunk, so that its size line keeps to
// eight hex digits.
const maxSpliceRun = 1<<32 - 1

// maxSpliceLead is the most decoded bytes that go into the pipe in front of
// a run (the few read with the framing before it).
const maxSpliceLead = 256

// framingRead is what a read takes past the end of the current chunk of a
// body of large chunks (readLimit): the CRLF and the next size line, and
// a few bytes of the data after them, the rest of which is left in the
// socket to be spliced.
const framingRead = 64

// spliced counts the response bytes moved with splice(2), for
// SplicedBytes.
var spliced atomic.Int64

// pipesHeld counts the pipes streams hold now (tests).
var pipesHeld atomic.Int64

// SplicedBytes returns how many response bytes went from an upstream to a
// client with splice(2) since the process started, never entering it
// (relay_spliced_bytes_total).
func SplicedBytes() int64 { return spliced.Load() }

var pipePool = sync.Pool{New: func() any {
	p, err := socket.NewPipe()
	if err != nil {
		return (*socket.Pipe)(nil)
	}
	return p
}}

// spliceState is a Stream's splicing state; its zero value is ready.
type spliceState struct {
	pipe     *socket.Pipe
	client   syscall.RawConn // the client's socket; nil: not plain TCP
	lookedUp bool            // client is set (or known to be unavailable)
	crlfOwed bool            // the last spliced chunk's CRLF is still to be written

	// The callbacks' arguments and results, and the callbacks bound once.
	want, n, inPipe int
	errno           syscall.Errno
	noPipe          bool // spliceIn found no pipe to splice into
	inFn, outFn     func(fd uintptr) bool
	extraFn         func(fd uintptr)
	peek            [1]byte

	head [24]byte // a run's size line when no decoded bytes lead it
}

// reset readies sp for another stream. Every run gives its pipe back (or
// closes it) before it returns, so none is held here.
func (sp *spliceState) reset() {
	sp.client, sp.lookedUp, sp.crlfOwed = nil, false, false
}

// rawSocket is a client connection that can give its plain TCP socket
// (nil when it is none, e.g. TLS).
type rawSocket interface{ RawSocket() syscall.RawConn }

// clientSocket returns the client's socket for splicing, or nil when the
// connection is not plain TCP.
func (s *Stream) clientSocket() syscall.RawConn {
	sp := &s.splice
	if !sp.lookedUp {
		sp.lookedUp = true
		switch c := s.client.(type) {
		case rawSocket:
			sp.client = c.RawSocket()
		case syscall.Conn: // a TCP connection (a *tls.Conn is none)
			sp.client, _ = c.SyscallConn()
		}
	}
	return sp.client
}

// spliceable reports whether the body's bytes may be spliced from here
// on: the record keeps none of them (and has its first byte's time), none
// is masked (bodyMask), and both sockets are plain TCP.
func (s *Stream) spliceable() bool {
	rec := s.rec
	return s.rb.raw != nil && rec.TTFT != record.None && !rec.NeedsChunkBytes() && !s.mask.on && s.clientSocket() != nil
}

// spliceRun returns how many body bytes can be spliced next, 0 when they
// must be read: the body is spliceable, nothing is buffered, the next run
// of data is long enough, and a pipe is at hand (held in s.splice.pipe
// when the result is not 0).
func (s *Stream) spliceRun() int64 {
	run, least := s.body.dataRun(), int64(minSpliceRun)
	if s.body.mode == bodyChunked {
		least = minSpliceChunk
	}
	// In the poller's callback (an SSE body, never spliceable) a splice's
	// own wait on the socket could not be had: its read lock is held.
	if run < least || s.rb.inCB || s.rb.buffered() != 0 || s.rb.pending != nil || !s.spliceable() {
		return 0
	}
	if s.splice.pipe == nil && !s.getPipe() {
		return 0
	}
	return min(run, maxSpliceRun)
}

// spliceBody sends run bytes of body (from spliceRun), led by the decoded
// bytes lead (already accounted), to the client as one chunk. It returns
// the body bytes it sent, lead's included; an error ends the stream, with
// its reason recorded.
func (s *Stream) spliceBody(run int64, lead []byte, leadAt int) (int64, error) {
	sp := &s.splice
	size := int64(sp.pipe.Size)
	if sp.inFn == nil {
		sp.inFn, sp.outFn = s.spliceIn, s.spliceOut
	}
	var head []byte
	if lead != nil {
		// The size line goes in the read buffer's head room before lead.
		head = s.sizeLine(s.rb.buf[:leadAt], int64(len(lead))+run, leadAt)
		head = s.rb.buf[leadAt-len(head) : leadAt+len(lead)]
	} else {
		head = s.sizeLine(sp.head[:], run, len(sp.head))
	}
	if n, errno := socket.Write(sp.pipe.W, head); errno != 0 || n != len(head) {
		s.dropPipe()
		s.fail(record.ErrClientClosed)
		return 0, errSpliceHead
	}
	sp.inPipe = len(head)
	sent := int64(len(lead))
	for moved := int64(0); moved < run; {
		sp.want, sp.n, sp.errno = int(min(run-moved, size)), 0, 0
		err := s.rb.raw.Read(sp.inFn)
		if err == nil && sp.noPipe {
			// The pipe went back to the pool for a wait and no other
			// could be had (descriptors exhausted): the run's size line
			// has gone out, so its rest is copied as it is.
			sp.noPipe = false
			n, err := s.copyRest(run - moved)
			sent += n
			if err != nil {
				return sent, err
			}
			break
		}
		if err == nil && sp.errno != 0 {
			err = &rawReadError{errno: sp.errno}
		}
		if err == nil && sp.n == 0 {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			s.dropPipe()
			s.fail(record.ErrUpstreamReset)
			return sent, err
		}
		n := sp.n
		at := s.arrivedUnkept(n)
		if s.rb.count != nil {
			*s.rb.count += int64(n)
		}
		moved += int64(n)
		sp.inPipe += n
		spliced.Add(int64(n))

		s.writeSince.Store(int64(at) + 1)
		sp.errno = 0
		err = sp.client.Write(sp.outFn)
		s.writeSince.Store(0)
		if err == nil && sp.errno != 0 {
			err = sp.errno
		}
		if err != nil {
			s.dropPipe()
			s.fail(record.ErrClientClosed)
			return sent, err
		}
		sent += int64(n)
	}
	sp.crlfOwed = true
	s.putPipe()
	if s.body.done {
		// A copied body's excess bytes would wait in the read buffer and
		// keep the connection from its pool; a spliced one's wait in the
		// socket, where the next response's head would be read from them.
		if sp.extraFn == nil {
			sp.extraFn = s.peekExtra
		}
		_ = s.rb.raw.Control(sp.extraFn)
	}
	return sent, nil
}

// peekExtra is the upstream socket's callback once a spliced body is
// complete: bytes waiting after it (an upstream that sent more than its
// Content-Length) mean the connection must not be reused.
func (s *Stream) peekExtra(fd uintptr) {
	n, _, err := syscall.Recvfrom(int(fd), s.splice.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if err == nil && n > 0 {
		s.closeAfter = true
	}
}

// readLimit is the most the next read may take (0: no limit). A chunked
// body whose chunks are large enough to splice is read only up to the end
// of the framing after the current chunk (and a few bytes past it): a read
// of everything that has arrived would take the head of the next chunk's
// data with it, and what is left of it might then be too short to splice.
// The chunk size seen last stands for the next: a body of small chunks is
// read in full buffers, as without splicing.
func (s *Stream) readLimit() int {
	b := &s.body
	if b.mode != bodyChunked || b.size < minSpliceChunk || !s.spliceable() {
		return 0
	}
	return int(min(b.dataRun(), 1<<30)) + framingRead
}

// errSpliceHead is a size line that did not fit an empty pipe, which
// cannot happen short of a broken descriptor.
var errSpliceHead = errors.New("upstream: splice: the pipe refused a chunk's size line")

// sizeLine writes a chunk's size line for n bytes (led by the CRLF owed,
// if any, which it pays) so that it ends at buf[end], and returns it.
func (s *Stream) sizeLine(buf []byte, n int64, end int) []byte {
	p := end - 2
	buf[p], buf[p+1] = '\r', '\n'
	for x := n; ; x >>= 4 {
		p--
		buf[p] = hexDigits[x&0xf]
		if x < 16 {
			break
		}
	}
	if s.splice.crlfOwed {
		p -= 2
		buf[p], buf[p+1] = '\r', '\n'
		s.splice.crlfOwed = false
	}
	return buf[p:end]
}

// arrivedUnkept accounts n body bytes of a run that just arrived and that
// the record does not keep (a spliced or copied run): their time and length
// as a chunk, and the body's progress. It returns their arrival time.
func (s *Stream) arrivedUnkept(n int) time.Duration {
	at := time.Since(s.start)
	s.lastRead.Store(int64(at))
	s.rec.AddChunkLen(n, at)
	s.body.skip(int64(n))
	return at
}

// copyRest sends the last rest bytes of a run whose size line went out
// with the first, read into the read buffer and written to the client
// connection as they are: a stream that could not have a pipe again after
// a wait still ends whole. It returns the bytes sent; an error ends the
// stream, with its reason recorded.
func (s *Stream) copyRest(rest int64) (int64, error) {
	rb := &s.rb
	// The run must end here, however long its upstream pauses: the step's
	// idle wait (noWait, idlewait.go) would return errWouldBlock on an
	// empty socket, and that is no failure.
	rb.noWait = false
	var sent int64
	for rest > 0 {
		rb.max = int(min(rest, 1<<30))
		err := rb.fill()
		rb.max = 0
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			s.fail(record.ErrUpstreamReset)
			return sent, err
		}
		n := rb.buffered()
		at := s.arrivedUnkept(n)
		p := rb.buf[rb.r:rb.w]
		rb.r = rb.w
		s.writeSince.Store(int64(at) + 1)
		_, err = s.client.Write(p)
		s.writeSince.Store(0)
		if err != nil {
			s.fail(record.ErrClientClosed)
			return sent, err
		}
		rest -= int64(n)
		sent += int64(n)
	}
	return sent, nil
}

// noPipes makes every pipe unavailable (tests: descriptors exhausted).
var noPipes atomic.Bool

// getPipe takes a pipe from the pool for s; false when none could be
// opened.
func (s *Stream) getPipe() bool {
	if noPipes.Load() {
		return false
	}
	if s.splice.pipe = pipePool.Get().(*socket.Pipe); s.splice.pipe == nil {
		return false
	}
	pipesHeld.Add(1)
	return true
}

// putPipe gives s's pipe, empty, back to the pool.
func (s *Stream) putPipe() {
	if s.splice.pipe != nil {
		pipePool.Put(s.splice.pipe)
		s.splice.pipe = nil
		pipesHeld.Add(-1)
	}
}

// dropPipe closes the pipe of a run that failed: it may still hold bytes.
func (s *Stream) dropPipe() {
	if s.splice.pipe != nil {
		s.splice.pipe.Close()
		s.splice.pipe = nil
		pipesHeld.Add(-1)
	}
}

// spliceIn is the upstream poller's callback: it splices what has arrived,
// up to want bytes, into the pipe; false (wait) when nothing has. An empty
// pipe goes back to the pool for the wait, as an empty read buffer does: a
// stream waiting for its upstream holds none, and takes one again when
// bytes are there.
func (s *Stream) spliceIn(fd uintptr) bool {
	sp := &s.splice
	if sp.pipe == nil && !s.getPipe() {
		sp.noPipe = true
		return true
	}
	for {
		n, errno := socket.Splice(sp.pipe.W, fd, sp.want)
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if sp.inPipe == 0 {
				s.putPipe()
			}
			return false
		}
		sp.n, sp.errno = n, errno
		return true
	}
}

// spliceOut is the client poller's callback: it splices the pipe's bytes
// out until none are left (true) or the socket is full (false: wait).
func (s *Stream) spliceOut(fd uintptr) bool {
	sp := &s.splice
	for sp.inPipe > 0 {
		n, errno := socket.Splice(fd, sp.pipe.R, sp.inPipe)
		switch {
		case errno == syscall.EINTR:
		case errno == syscall.EAGAIN:
			return false
		case errno != 0:
			sp.errno = errno
			return true
		case n == 0:
			sp.errno = syscall.EIO // the pipe ran dry: cannot happen
			return true
		default:
			sp.inPipe -= n
		}
	}
	return true
}

// payCRLF writes the CRLF owed by a spliced chunk into bw, ahead of what
// goes through bw next. A CRLF is owed only on the direct path, where bw
// is set.
func (s *Stream) payCRLF(bw *bufio.Writer) {
	if s.splice.crlfOwed {
		s.restoreWriter()
		_, _ = bw.WriteString("\r\n")
		s.splice.crlfOwed = false
	}
}
