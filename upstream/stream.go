package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// readBufSize is the copy buffer per stream: one upstream read, one client
// write and flush. SSE events are far smaller; audio chunks rarely larger.
const readBufSize = 32 << 10

// Finisher receives a stream's record once the stream has ended, whatever
// the outcome; it must not keep the record after it returns.
type Finisher func(*record.Record)

// Stream is one open upstream response being relayed to a client. It is the
// client response's body stream: fasthttp calls WriteTo to copy the body and
// CloseWithError when done, which ends the record and hands it to the
// Finisher.
type Stream struct {
	route  *Route
	rec    *record.Record
	finish Finisher
	wd     *Watchdog

	req  *fasthttp.Request
	resp *fasthttp.Response
	body io.Reader // upstream body stream; nil when fasthttp already read the body
	up   *conn     // upstream connection, when known

	client net.Conn // the client's connection, for the watchdog's liveness check
	start  time.Time
	buf    []byte
	ttft   tokenScanner

	// Written by the stream's goroutine, read by the watchdog.
	lastRead  atomic.Int64 // nanoseconds since start of the last upstream read
	reason    atomic.Pointer[string]
	nextPeek  int64 // watchdog-owned: when to check the client next (ns since start)
	wdPrev    *Stream
	wdNext    *Stream
	wdTracked bool

	closed bool
}

var streamPool = sync.Pool{New: func() any {
	return &Stream{buf: make([]byte, readBufSize)}
}}

// Request is what Open needs from the client's request.
type Request struct {
	Ctx    context.Context
	Header *fasthttp.RequestHeader
	Method []byte
	Path   []byte // normalized request path
	Query  []byte // raw query string, without '?'
	Body   []byte
	Client net.Conn
}

// Open sends the request upstream and waits for the response headers, which
// it copies to resp (the client's response). On success the returned Stream
// must be set as resp's body stream (SetBody does that); on failure the
// error type and client status say why, and nothing was written to resp.
func (r *Route) Open(in *Request, rec *record.Record, resp *fasthttp.Response, wd *Watchdog, finish Finisher) (*Stream, string, int, error) {
	if !r.Configured() {
		return nil, record.ErrUpstreamConfig, fasthttp.StatusBadGateway, ErrNoProviderKey
	}
	req := fasthttp.AcquireRequest()
	up := fasthttp.AcquireResponse()
	uri := req.URI()
	uri.SetSchemeBytes(r.scheme)
	uri.SetHostBytes(r.host)
	uri.DisablePathNormalizing = true
	pathBuf := uri.PathOriginal()[:0]
	pathBuf = append(pathBuf, r.basePath...)
	pathBuf = append(pathBuf, in.Path...)
	uri.SetPathBytes(pathBuf)
	uri.SetQueryStringBytes(in.Query)
	req.Header.SetMethodBytes(in.Method)
	req.Header.SetHostBytes(r.host)
	rec.RequestHeaders = r.copyRequestHeaders(&req.Header, in.Header, rec.RequestHeaders[:0])
	req.SetBodyRaw(in.Body)

	err := r.client.DoDeadline(req, up, time.Now().Add(r.FirstByteTimeout))
	rec.TTFB = time.Since(rec.Start)
	if err != nil {
		rec.TTFB = record.None
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(up)
		errType, status := classifyOpenError(err)
		return nil, errType, status, err
	}
	s := streamPool.Get().(*Stream)
	s.route, s.rec, s.finish, s.wd = r, rec, finish, wd
	s.req, s.resp = req, up
	s.client = in.Client
	s.start = rec.Start
	s.up = connOf(up)
	if s.up != nil {
		// Lift the first-byte deadline: from here the watchdog's idle and
		// request timeouts govern the stream.
		_ = s.up.SetReadDeadline(time.Time{})
	}
	s.body = up.BodyStream()

	status := up.StatusCode()
	rec.Status = status
	if status >= 400 {
		rec.ErrorType = record.ErrUpstreamStatus
	}
	resp.SetStatusCode(status)
	rec.ResponseHeaders = copyResponseHeaders(&resp.Header, &up.Header, rec.ResponseHeaders[:0])
	return s, "", 0, nil
}

// SetBody makes s the body of resp: fasthttp copies it with WriteTo after the
// handler returns, preserving the upstream's Content-Length when it sent one.
func (s *Stream) SetBody(resp *fasthttp.Response) {
	size := s.resp.Header.ContentLength()
	if size < 0 {
		size = -1
	}
	if s.body == nil {
		// fasthttp read the (empty or tiny) body already; SetBody copies it.
		b := s.resp.Body()
		s.account(b, time.Since(s.start))
		resp.SetBody(b)
		s.CloseWithError(nil)
		return
	}
	if s.wd != nil {
		s.wd.track(s)
	}
	resp.SetBodyStream(s, size)
}

// Read is not used: fasthttp prefers WriteTo (see SupportsBodyWriteTo); it
// exists because a body stream must be an io.Reader.
func (s *Stream) Read(p []byte) (int, error) {
	if s.body == nil {
		return 0, io.EOF
	}
	n, err := s.body.Read(p)
	if n > 0 {
		s.account(p[:n], time.Since(s.start))
	}
	return n, err
}

// SupportsBodyWriteTo tells fasthttp to call WriteTo, which writes each
// upstream read straight to the client as one chunk with a flush, with no
// goroutine or pipe in between.
func (s *Stream) SupportsBodyWriteTo() bool { return true }

// WriteTo copies the upstream body to w, one upstream read per write; fasthttp's
// chunked writer flushes each write to the client. It returns when the
// upstream ends, fails or is interrupted by the watchdog, or the client write
// fails.
func (s *Stream) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		n, err := s.body.Read(s.buf)
		if n > 0 {
			at := time.Since(s.start)
			s.lastRead.Store(int64(at))
			s.account(s.buf[:n], at)
			if _, werr := w.Write(s.buf[:n]); werr != nil {
				s.fail(record.ErrClientClosed)
				return total, werr
			}
			total += int64(n)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			if s.reason.Load() == nil {
				s.fail(record.ErrUpstreamReset)
			}
			return total, err
		}
	}
}

// account stamps the record for one upstream read.
func (s *Stream) account(b []byte, at time.Duration) {
	rec := s.rec
	if rec.TTFT == record.None && rec.Status < 400 {
		if s.route.Kind == record.KindRaw || s.ttft.scan(b) {
			rec.TTFT = at
		}
	}
	rec.AddChunk(b, at)
}

// fail records why the stream ended early; the first reason wins.
func (s *Stream) fail(errType string) {
	s.reason.CompareAndSwap(nil, &errType)
}

// abort ends the stream from another goroutine (the watchdog): it records the
// reason and interrupts a blocked upstream read by closing the connection.
func (s *Stream) abort(errType string) {
	s.fail(errType)
	if c, ok := s.body.(fasthttp.ReadCloserWithError); ok {
		_ = c.CloseWithError(errAborted)
	}
}

var errAborted = errors.New("upstream: stream aborted")

// CloseWithError ends the stream: fasthttp calls it once the body was
// written or writing failed. It finishes the record and releases
// everything. Calling it more than once is harmless.
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
	if p := s.reason.Load(); p != nil {
		rec.ErrorType = *p
	}
	rec.Duration = time.Since(s.start)
	// Closing before EOF discards the upstream connection, which is what
	// tells the upstream to stop generating.
	_ = s.resp.CloseBodyStream()
	fasthttp.ReleaseRequest(s.req)
	fasthttp.ReleaseResponse(s.resp)
	finish := s.finish
	s.release()
	finish(rec)
	return nil
}

func (s *Stream) release() {
	buf := s.buf
	*s = Stream{buf: buf}
	streamPool.Put(s)
}
