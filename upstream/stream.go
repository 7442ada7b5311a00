package upstream

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// readBufSize is the copy buffer per stream: the most one relayed read (one
// client write) carries.
const readBufSize = 16 << 10

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

	hdr        fasthttp.ResponseHeader // the upstream's response headers
	body       bodyReader
	cc         any   // fasthttp's pooled connection handle (see releaseConn)
	up         *conn // the same connection
	closeAfter bool  // the connection cannot be reused after this response

	client net.Conn // the client's connection, for the watchdog's liveness check
	start  time.Time
	buf    []byte
	ttft   tokenScanner

	// Written by the stream's goroutine, read by the watchdog.
	lastRead atomic.Int64 // nanoseconds since start of the last upstream read
	// writeSince is 1 + nanoseconds since start when the client write in
	// progress began, 0 between writes. A client that stops reading blocks
	// the write (and, through it, the upstream); the watchdog gives such a
	// client up after the route's idle timeout.
	writeSince atomic.Int64
	reason     atomic.Pointer[string]
	nextPeek   int64 // watchdog-owned: when to check the client next (ns since start)
	wdPrev     *Stream
	wdNext     *Stream
	wdTracked  bool
	waiting    bool // watchdog-read under its mutex: the response headers are awaited

	closed bool
}

var streamPool = sync.Pool{New: func() any {
	return &Stream{buf: make([]byte, readBufSize)}
}}

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
// write is flushed at once whatever framing the upstream used.
func (s *Stream) SetBody(resp *fasthttp.Response) {
	if s.body.done {
		resp.ResetBody()
		s.CloseWithError(nil)
		return
	}
	if s.wd != nil {
		s.wd.track(s)
	}
	resp.SetBodyStream(s, -1)
}

// Read exists because a body stream must be an io.Reader; fasthttp uses
// WriteTo (see SupportsBodyWriteTo).
func (s *Stream) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
	if n > 0 {
		at := time.Since(s.start)
		s.lastRead.Store(int64(at))
		s.account(p[:n], at)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		s.fail(record.ErrUpstreamReset)
	}
	return n, err
}

// SupportsBodyWriteTo tells fasthttp to call WriteTo, which writes each
// relayed read straight to the client as one chunk with a flush, with no
// goroutine or pipe in between.
func (s *Stream) SupportsBodyWriteTo() bool { return true }

// WriteTo copies the upstream body to w; fasthttp's chunked writer flushes
// each write to the client. One write carries everything that had arrived
// from the upstream, so a burst of events costs one flush and a lone event
// goes out at once. It returns when the upstream ends, fails or is cut by
// the watchdog, or the client write fails.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		n, err := s.body.Read(s.buf)
		if n > 0 {
			at := time.Since(s.start)
			s.lastRead.Store(int64(at))
			s.account(s.buf[:n], at)
			s.writeSince.Store(int64(at) + 1)
			_, werr := w.Write(s.buf[:n])
			s.writeSince.Store(0)
			if werr != nil {
				s.fail(record.ErrClientClosed)
				return total, werr
			}
			total += int64(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			s.fail(record.ErrUpstreamReset)
			return total, err
		}
	}
}

// account stamps the record for one relayed read.
func (s *Stream) account(b []byte, at time.Duration) {
	rec := s.rec
	if rec.TTFT == record.None {
		s.ttft.start(rec, s.route.Kind)
		if s.ttft.scan(b) {
			rec.TTFT = at
		}
	}
	rec.AddChunk(b, at)
}

// fail records why the stream ended early; the first reason wins.
func (s *Stream) fail(errType string) {
	s.reason.CompareAndSwap(nil, &errType)
}

// abort ends the stream from another goroutine (the watchdog): it records
// the reason and closes the upstream connection, which unblocks the read.
// A write to a client that does not read is unblocked by a write deadline
// in the past: closing the upstream alone would leave the stream's
// goroutine stuck in that write for as long as the client stays connected.
// The failed write ends the response, and fasthttp closes the client
// connection, so the deadline never reaches another request.
func (s *Stream) abort(errType string) {
	s.fail(errType)
	if s.up != nil {
		_ = s.up.Close()
	}
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
	if failed != nil {
		rec.ErrorType = *failed
	}
	rec.Duration = time.Since(s.start)
	reuse := failed == nil && s.body.done && !s.closeAfter && s.up.br.Buffered() == 0
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
	s.body = bodyReader{}
	s.ttft.reset()
	s.route, s.rec, s.finish, s.wd = nil, nil, nil, nil
	s.cc, s.up, s.closeAfter, s.client = nil, nil, false, nil
	s.start = time.Time{}
	s.lastRead.Store(0)
	s.writeSince.Store(0)
	s.reason.Store(nil)
	s.nextPeek, s.wdPrev, s.wdNext, s.wdTracked, s.waiting = 0, nil, nil, false, false
	s.closed = false
	streamPool.Put(s)
}
