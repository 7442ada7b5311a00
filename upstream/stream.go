package upstream

import (
	"bufio"
	"errors"
	"io"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// Finisher receives a stream's record once the stream has ended, whatever
// the outcome; it must not keep the record after it returns.
type Finisher func(*record.Record)

// Stream is one open upstream response being relayed to a client. It is the
// client response's body stream: fasthttp calls WriteTo to copy the body and
// CloseWithError when done, which ends the record, returns the upstream
// connection to its pool (or closes it) and hands the record to the
// Finisher.
type Stream struct {
	route  *Route
	rec    *record.Record
	finish Finisher
	wd     *Watchdog
	// apart: the stream is finished apart from the goroutine that writes
	// it (Prepare's later), one kept shallow on purpose: WriteTo copies
	// the classic way, without the poller callback's frames.
	apart bool

	hdr        fasthttp.ResponseHeader // the upstream's response headers
	rb         readBuf                 // the body's bytes as they arrive
	body       bodyReader
	cc         any   // fasthttp's pooled connection handle (see releaseConn)
	up         *conn // the same connection
	closeAfter bool  // the connection cannot be reused after this response

	client net.Conn // the client's connection, for the watchdog's liveness check
	// rctx is the client's request when fasthttp serves it (Request.Ctx):
	// the stream sets the connection's write deadline through it
	// (deadline.go), so that fasthttp knows and clears it after the
	// response.
	rctx  *fasthttp.RequestCtx
	rate  RateLimit // the request's (Request.Rate)
	start time.Time
	ttft  tokenScanner
	mask  bodyMask // the provider key in an answer that is no success (keymask.go)
	// unread is what Read has yet to hand out of the last view.
	unread []byte
	// readErr is the error that came with that view.
	readErr error

	// Written by the stream's goroutine, read by the watchdog.
	lastRead atomic.Int64 // nanoseconds since start of the last upstream read
	// writeSince is 1 + nanoseconds since start when the client write in
	// progress began, 0 between writes. A client that stops reading blocks
	// the write (and, through it, the upstream); the watchdog gives such a
	// client up after the route's idle timeout.
	writeSince atomic.Int64
	reason     atomic.Pointer[string]
	// overTime: the watchdog cut the stream at the request's Timeout (not
	// for the upstream's silence): no verdict on its target.
	overTime atomic.Bool
	// Watchdog-owned, for a client write that blocks (progressOf): the
	// write they belong to (its writeSince), the client socket's unsent
	// bytes when last looked at, and when (ns since start) they last fell.
	outqWrite, outqSeen, outqFell int64
	nextPeek                      int64 // watchdog-owned: when to check the client next (ns since start)
	wdIndex                       int   // watchdog-owned: s's entry in Watchdog.watched while wdTracked
	wdTracked                     bool
	waiting                       bool // watchdog-read under its mutex: the response headers are awaited
	// The client socket in the watchdog's hang-up set (hangup_linux.go;
	// where it cannot be, the watchdog peeks instead) and the upstream
	// socket in the same set (pollcopy.go), all watchdog-owned.
	hupRC     syscall.RawConn
	hupClient hupSocket
	hupUp     hupSocket

	// parked is the client writer whose buffer is on the shelf while the
	// stream is between its first chunk and its last (parkedwriter.go);
	// parkedSize is that buffer's size, holder an empty writer struct kept
	// for the next park.
	parked     *bufio.Writer
	parkedSize int
	holder     *bufio.Writer

	splice spliceState // splice.go
	poll   pollCopy    // pollcopy.go

	// A hijacked stream whose upstream is quiet waits without a goroutine
	// (idlewait.go): copied is what copyTo had written, hw the client
	// writer, wake what resumes it, hc and hkeep its owner's connection,
	// gap the time between its last two views, idleGap the gap from which
	// it waits so; idleState, idleSeq and idleFD are its place in the idle
	// set.
	copied    int64
	hw        *bufio.Writer
	wake      func(*Stream)
	hc        net.Conn
	hkeep     bool
	gap       time.Duration
	idleGap   time.Duration
	idleState atomic.Int32
	idleSeq   int32
	idleFD    int32

	// pending is the target that sent this answer's head when its
	// passive health waits on the body (Open: the attempt did not await
	// the body's first byte), pendingOf the route whose health options
	// apply; settleHealth reports it once and clears it.
	pending   *target
	pendingOf *Route
	// pendingPick: how pending's attempt was picked.
	pendingPick picked
	// served is that target once settleHealth counted it a success, and
	// servedClear what the success cleared: a stream that turns out to
	// carry an error event counts as its failure after all when it ends
	// (target.failLate).
	served      *target
	servedOf    *Route
	servedClear cleared

	closed bool
}

var streamPool = sync.Pool{New: func() any { return new(Stream) }}

// watchWaiting lets the watchdog check the client while the upstream
// connection c has not answered yet.
func (s *Stream) watchWaiting(c *conn) {
	if s.wd == nil {
		return
	}
	s.up = c
	s.waiting = true
	s.wd.track(s)
}

// unwatchWaiting ends watchWaiting; SetBody tracks the stream again.
func (s *Stream) unwatchWaiting() {
	if s.wd == nil {
		return
	}
	s.wd.untrack(s)
	s.waiting = false
	s.up = nil
}

// SetBody makes s the body of resp: fasthttp copies it with WriteTo after the
// handler returns. The body always goes to the client chunked, so that every
// write is flushed at once whatever framing the upstream used. A body that
// is whole already is set (or dropped) and the stream finished at once, by
// Open's finisher; one streamed after the handler returns is finished by
// later instead, when that is set.
func (s *Stream) SetBody(resp *fasthttp.Response, later Finisher) {
	if s.Prepare(resp, later) {
		resp.SetBodyStream(s, -1)
	}
}

// Prepare is SetBody for a caller that writes the stream itself
// (WriteHijacked): false when the body went into resp whole, or the
// stream ended, and nothing is left to write but resp.
func (s *Stream) Prepare(resp *fasthttp.Response, later Finisher) bool {
	if s.body.done {
		resp.ResetBody()
		if cl := s.hdr.ContentLength(); cl > 0 && s.rctx != nil && s.rctx.IsHead() {
			// A HEAD answer's length is the GET's (RFC 9110 9.3.2):
			// the client's, with no body (fasthttp skips it for HEAD).
			resp.Header.SetContentLength(cl)
		}
		s.CloseWithError(nil)
		return false
	}
	if s.body.mode == bodyFixed && s.body.left <= maxInlineBody && int64(s.rb.buffered()) >= s.body.left {
		// The whole body came with the head (a non-streamed answer,
		// typically): it goes out with the response head in one write,
		// with its length, instead of as a chunked stream.
		v, err := s.body.next()
		if err == nil && s.body.done {
			s.relayed(v)
			resp.SetBody(s.rb.buf[v.start:v.end])
			s.CloseWithError(nil)
			return false
		}
		s.fail(record.ErrUpstreamReset)
		resp.ResetBody()
		s.CloseWithError(nil)
		return false
	}
	if s.wd != nil {
		s.wd.track(s)
	}
	if later != nil {
		s.finish, s.apart = later, true
	}
	s.ownWrites()
	return true
}

// maxInlineBody is the largest whole body SetBody copies into the response
// instead of streaming it.
const maxInlineBody = 64 << 10

// Read exists because a body stream must be an io.Reader; fasthttp uses
// WriteTo (see SupportsBodyWriteTo).
func (s *Stream) Read(p []byte) (int, error) {
	if len(s.unread) == 0 {
		if s.readErr != nil {
			return 0, s.readErr
		}
		v, err := s.body.next()
		s.readErr = err
		if v.end > v.start {
			s.relayed(v)
			s.unread = s.rb.buf[v.start:v.end]
		}
		if err != nil && !errors.Is(err, io.EOF) {
			s.fail(record.ErrUpstreamReset)
		}
		if len(s.unread) == 0 {
			return 0, err
		}
	}
	n := copy(p, s.unread)
	s.unread = s.unread[n:]
	return n, nil
}

// SupportsBodyWriteTo tells fasthttp to call WriteTo, which writes each
// relayed read straight to the client as one chunk with a flush, with no
// goroutine or pipe in between.
func (s *Stream) SupportsBodyWriteTo() bool { return true }

// WriteTo copies the upstream body to w, fasthttp's chunked writer, which
// flushes each write to the client. One write carries everything that had
// arrived from the upstream, so a burst of events costs one flush and a
// lone event goes out at once. The first write goes through w, behind the
// response head fasthttp buffered; after it w's buffer is empty, and each
// later one is framed in the read buffer's head and tail room and written
// to the client's connection in one system call, without a copy. It
// returns when the upstream ends, fails or is cut by the watchdog, or the
// client write fails. The server's goroutine, grown by the request's first
// phase, copies an SSE body in the poller's callback as a detached
// stream's writer does (pollcopy.go); one kept shallow (Prepare's later:
// handlers' small_stacks) copies the classic way.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	var bw *bufio.Writer
	if s.client != nil {
		bw = chunkedWriterBuffer(w)
	}
	var n int64
	var err error
	if !s.apart {
		n, err = s.copyPolled(w, bw)
	} else {
		n, err = s.copyTo(w, bw)
	}
	if err != nil {
		s.answerCut(bw) // cutanswer.go
	} else {
		s.boundLastFlush()
	}
	return n, err
}

// copyTo is WriteTo. bw, when set, is the buffer under w, which frames
// chunks and flushes each write: chunks after the first may then go
// straight to s.client, and the last one is framed into bw without a
// flush, so that it leaves with the terminating chunk fasthttp writes
// next, in one write (with the response head too when the whole body came
// at once). In between, bw's buffer is parked (parkedwriter.go); it is
// back whenever copyTo writes through w or bw, and when it returns. Long
// runs of bytes the record does not keep skip the read buffer: they are
// spliced from socket to socket (splice.go). WriteTo and a detached
// stream's writer copy with copyPolled instead.
func (s *Stream) copyTo(w io.Writer, bw *bufio.Writer) (int64, error) {
	for {
		if stop, err := s.copyStep(w, bw); stop {
			return s.copied, err
		}
	}
}

// copyStep is one turn of copyTo's loop: it relays what has arrived (or
// splices a run), waiting for it if need be. stop says copyTo is done,
// with err; s.copied counts what went out. In the poller's callback
// (copyInPoller) a step that would wait returns errNeedWait instead, not
// stopping.
func (s *Stream) copyStep(w io.Writer, bw *bufio.Writer) (stop bool, err error) {
	direct := bw != nil
	total := s.copied
	if direct && total > 0 {
		if run := s.spliceRun(); run > 0 {
			n, err := s.spliceBody(run, nil, 0)
			s.copied += n
			if err != nil {
				s.restoreWriter()
				return true, err
			}
			return false, nil
		}
	}
	if direct {
		s.rb.max = s.readLimit()
	}
	s.rb.noWait = s.wake != nil && total > 0 && s.gap >= s.idleGap
	v, err := s.body.next()
	if err == errNeedWait {
		return false, err
	}
	if err == errWouldBlock {
		if bw != nil {
			s.parkWriter(bw)
		}
		return true, err
	}
	if n := v.end - v.start; n > 0 {
		at := s.relayed(v)
		if direct && total > 0 && err == nil && n <= maxSpliceLead {
			if run := s.spliceRun(); run > 0 {
				m, serr := s.spliceBody(run, s.rb.buf[v.start:v.end], v.start)
				s.copied += m
				if serr != nil {
					s.restoreWriter()
					return true, serr
				}
				return false, nil
			}
		}
		s.writeSince.Store(int64(at) + 1)
		var werr error
		viaW := false
		if direct && v.tailFree && err == nil && s.body.done {
			s.restoreWriter()
			_, werr = bw.Write(s.frame(v))
		} else if direct && total > 0 && v.tailFree {
			_, werr = s.client.Write(s.frame(v))
		} else {
			s.payCRLF(bw)
			s.restoreWriter()
			_, werr = w.Write(s.rb.buf[v.start:v.end])
			viaW = true
		}
		s.writeSince.Store(0)
		if werr != nil {
			s.restoreWriter()
			s.fail(record.ErrClientClosed)
			return true, werr
		}
		s.copied += int64(n)
		if viaW && direct && err == nil && !s.body.done {
			// w flushed: until the last chunk the writer carries nothing.
			s.parkWriter(bw)
		}
	}
	if err != nil {
		s.restoreWriter()
		if errors.Is(err, io.EOF) && s.reason.Load() == nil {
			s.payCRLF(bw)
			return true, nil
		}
		s.fail(record.ErrUpstreamReset)
		return true, err
	}
	return false, nil
}

// relayed stamps the record for one view about to go to the client,
// masking the provider key in it first where the answer asks for that.
func (s *Stream) relayed(v view) time.Duration {
	if s.mask.on {
		s.mask.apply(s.rb.buf[v.start:v.end])
	}
	if s.pending != nil {
		s.settleHealth(outcomeOK, "") // the body's first byte came
	}
	at := time.Since(s.start)
	s.gap = at - time.Duration(s.lastRead.Load())
	s.lastRead.Store(int64(at))
	s.account(s.rb.buf[v.start:v.end], at)
	return at
}

// frame makes v one HTTP chunk in place: the size line goes in the head
// room before it (after the CRLF a spliced chunk owes, if any), the CRLF in
// the free bytes after it.
func (s *Stream) frame(v view) []byte {
	buf := s.rb.buf
	head := s.sizeLine(buf, int64(v.end-v.start), v.start)
	buf[v.end], buf[v.end+1] = '\r', '\n'
	return buf[v.start-len(head) : v.end+2]
}

// chunkedWriterBuffer returns the buffer under w when w is fasthttp's
// writer of a chunked response body, else nil. That writer flushes each
// write: after one, nothing of the response waits in the buffer, and
// chunks written straight to the connection arrive in order. Its type is
// unexported: it is recognized by name, and its buffer is its first field,
// which is checked (once, with reflect) before it is read; a fasthttp whose
// writer looks otherwise gets every write through w.
func chunkedWriterBuffer(w io.Writer) *bufio.Writer {
	t := reflect.TypeOf(w)
	// reflect's String of a named type does not allocate.
	if t == nil || t.String() != "*fasthttp.chunkedBodyWriter" || !chunkedLayoutOK(t) {
		return nil
	}
	return (*struct{ w *bufio.Writer })(reflect.ValueOf(w).UnsafePointer()).w
}

var chunkedLayout struct {
	once sync.Once
	ok   bool
}

// chunkedLayoutOK reports whether t (a pointer to fasthttp's chunked body
// writer) points to a struct whose first field is its *bufio.Writer.
func chunkedLayoutOK(t reflect.Type) bool {
	chunkedLayout.once.Do(func() {
		e := t.Elem()
		chunkedLayout.ok = e.Kind() == reflect.Struct && e.NumField() > 0 &&
			e.Field(0).Offset == 0 && e.Field(0).Type == reflect.TypeOf((*bufio.Writer)(nil))
	})
	return chunkedLayout.ok
}

// account stamps the record for one relayed read.
func (s *Stream) account(b []byte, at time.Duration) {
	rec := s.rec
	s.ttft.account(rec, s.route.Kind, b, at)
	rec.AddChunk(b, at)
}

// settleHealth reports o for the target whose passive health waited on
// this answer's body (see Stream.pending), once. A success is kept
// (Stream.served) for settleStreamError.
func (s *Stream) settleHealth(o outcome, why string) {
	t, r, p := s.pending, s.pendingOf, s.pendingPick
	s.pending, s.pendingOf, s.pendingPick = nil, nil, picked{}
	if o == outcomeOK {
		s.succeeded(t, r, p)
		return
	}
	t.report(o, p, 0, &r.Health, r.Logger, why)
}

// succeeded counts the answer a success of its target t (of route r), and
// keeps it for settleStreamError.
func (s *Stream) succeeded(t *target, r *Route, p picked) {
	s.served, s.servedOf, s.servedClear = t, r, t.succeed(p, r.Logger)
}

// settleStreamError counts the stream's target, a success so far, as
// failed when the provider sent an error event inside the stream (the
// record is typed upstream_stream_error), once the stream ends.
func (s *Stream) settleStreamError() {
	t, r := s.served, s.servedOf
	s.served, s.servedOf = nil, nil
	if t != nil && s.rec.ErrorType == record.ErrUpstreamStreamError {
		t.failLate(s.servedClear, &r.Health, r.Logger, record.ErrUpstreamStreamError)
	}
}

// fail records why the stream ended early; the first reason wins.
func (s *Stream) fail(errType string) {
	s.reason.CompareAndSwap(nil, &errType)
}

// abort ends the stream from another goroutine (the watchdog): it records
// the reason and shuts the upstream connection down, which unblocks the
// read (the stream closes it when it ends).
// A write to a client that does not read is unblocked by a write deadline
// in the past: shutting the upstream down alone would leave the stream's
// goroutine stuck in that write for as long as the client stays connected.
// The failed write ends the response, and fasthttp closes the client
// connection, so the deadline never reaches another request.
func (s *Stream) abort(errType string) {
	s.fail(errType)
	if s.up != nil {
		s.up.shutdown()
	}
	s.cancelIdle()
	if s.client != nil && s.writeSince.Load() != 0 {
		_ = s.client.SetWriteDeadline(time.Now())
	}
}

// CloseWithError ends the stream: fasthttp calls it once the body was
// written or writing failed. It finishes the record and releases
// everything. Closing an upstream connection before its body ended is what
// tells the upstream to stop generating.
func (s *Stream) CloseWithError(err error) error {
	if s.closed {
		return nil
	}
	s.closed = true
	if s.wd != nil {
		s.wd.untrack(s)
	}
	if err != nil {
		s.fail(record.ErrClientClosed)
	}
	rec := s.rec
	failed := s.reason.Load()
	if failed != nil && rec.ErrorType != record.ErrUpstreamStreamError {
		// An error the provider sent in the stream came first: it is why
		// the stream ended, whatever followed (a reset, the client leaving).
		rec.ErrorType = *failed
	}
	if s.pending != nil {
		// No byte of the body was relayed: an empty body that ended
		// well is a success, a cut on the upstream's side (cutanswer.go)
		// the failure it is, the client leaving or the request's own
		// Timeout neither (as for an attempt that is not the last: Open).
		switch {
		case failed == nil:
			s.settleHealth(outcomeOK, "")
		case (*failed == record.ErrUpstreamReset || *failed == record.ErrUpstreamTimeout) && !s.overTime.Load():
			s.settleHealth(outcomeFailed, *failed)
		default:
			s.settleHealth(outcomeNeutral, *failed)
		}
	}
	s.settleStreamError()
	rec.Duration = time.Since(s.start)
	reuse := failed == nil && s.body.done && !s.closeAfter && s.rb.buffered() == 0
	s.releaseConn(reuse)
	finish := s.finish
	s.release()
	finish(rec)
	return nil
}

// releaseConn returns the upstream connection to the pool or closes it.
// fasthttp's connection handle has an unexported type; the method
// expression below lets the compiler name it for the type assertion.
func (s *Stream) releaseConn(reuse bool) {
	if s.cc == nil {
		return
	}
	cc := handleOf(s.cc, (*fasthttp.HostClient).AcquireConn)
	if reuse && s.up != nil && mono.Now()-s.up.born > int64(maxConnAge) {
		reuse = false // maxConnAge
	}
	if reuse {
		s.route.client.ReleaseConn(cc)
	} else {
		s.route.client.CloseConn(cc)
	}
	s.cc, s.up = nil, nil
}

func handleOf[T any](v any, _ func(*fasthttp.HostClient, time.Duration, bool) (T, error)) T {
	return v.(T)
}

func (s *Stream) release() {
	s.hdr.Reset()
	s.rb.reset(nil, nil, nil)
	s.body = bodyReader{}
	s.unread, s.readErr = nil, nil
	s.ttft.reset()
	s.mask = bodyMask{}
	s.route, s.rec, s.finish, s.wd, s.apart = nil, nil, nil, nil, false
	s.cc, s.up, s.closeAfter, s.client, s.rctx = nil, nil, false, nil, nil
	s.start = time.Time{}
	s.lastRead.Store(0)
	s.writeSince.Store(0)
	s.reason.Store(nil)
	s.overTime.Store(false)
	s.nextPeek, s.wdIndex, s.wdTracked, s.waiting = 0, 0, false, false
	s.outqWrite, s.outqSeen, s.outqFell = 0, 0, 0
	s.hupRC, s.hupClient, s.hupUp = nil, hupSocket{}, hupSocket{}
	s.splice.reset()
	s.poll = pollCopy{fn: s.poll.fn}
	s.copied, s.hw, s.wake, s.hc, s.hkeep, s.gap, s.idleGap = 0, nil, nil, nil, false, 0, 0
	s.idleState.Store(notIdle)
	s.idleSeq, s.idleFD = 0, 0
	s.pending, s.pendingOf, s.pendingPick = nil, nil, picked{}
	s.served, s.servedOf, s.servedClear = nil, nil, cleared{}
	s.closed = false
	streamPool.Put(s)
}
