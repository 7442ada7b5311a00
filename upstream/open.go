package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

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
// must be set as resp's body with SetBody; on failure the error type and
// client status say why, and nothing was written to resp.
func (r *Route) Open(in *Request, rec *record.Record, resp *fasthttp.Response, wd *Watchdog, finish Finisher) (*Stream, string, int, error) {
	if !r.Configured() {
		return nil, record.ErrUpstreamConfig, fasthttp.StatusBadGateway, ErrNoProviderKey
	}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	r.buildRequest(req, in, rec)

	s := streamPool.Get().(*Stream)
	s.route, s.rec, s.finish, s.wd = r, rec, finish, wd
	s.client = in.Client
	s.start = rec.Start
	if err := s.exchange(r, req); err != nil {
		errType, status := classifyOpenError(err)
		if p := s.reason.Load(); p != nil {
			// The watchdog saw the client leave while the upstream thought.
			errType, status = *p, statusClientClosed
		}
		s.release()
		rec.TTFB = record.None
		return nil, errType, status, err
	}
	rec.TTFB = time.Since(rec.Start)

	status := s.hdr.StatusCode()
	rec.Status = status
	if status >= 400 {
		rec.ErrorType = record.ErrUpstreamStatus
	}
	resp.SetStatusCode(status)
	rec.ResponseHeaders = copyResponseHeaders(&resp.Header, &s.hdr, rec.ResponseHeaders[:0])
	return s, "", 0, nil
}

// buildRequest fills req: upstream URL, the client's end-to-end headers, the
// provider key, the body as the client sent it (or with include_usage).
func (r *Route) buildRequest(req *fasthttp.Request, in *Request, rec *record.Record) {
	uri := req.URI()
	uri.DisablePathNormalizing = true
	uri.SetSchemeBytes(r.scheme)
	uri.SetHostBytes(r.host)
	pathBuf := append(uri.PathOriginal()[:0], r.basePath...)
	pathBuf = appendEscapedPath(pathBuf, in.Path)
	uri.SetPathBytes(pathBuf)
	uri.SetQueryStringBytes(in.Query)
	req.Header.SetMethodBytes(in.Method)
	req.Header.SetHostBytes(r.host)
	rec.RequestHeaders = r.copyRequestHeaders(&req.Header, in.Header, rec.RequestHeaders[:0])
	req.SetBodyRaw(in.Body)
}

// exchange writes req on a pooled connection and reads the response
// headers, leaving s ready to read the body. A reused keep-alive connection
// that the upstream had closed shows up as an error before any byte came
// back; then nothing was processed and the request is sent once more on a
// fresh connection.
func (s *Stream) exchange(r *Route, req *fasthttp.Request) error {
	head := req.Header.IsHead()
	for attempt := 0; ; attempt++ {
		cc, err := r.client.AcquireConn(r.ConnectTimeout, false)
		if err != nil {
			return err
		}
		c, ok := cc.Conn().(*conn)
		if !ok {
			r.client.CloseConn(cc)
			return errors.New("BUG: upstream connection not dialed by upstream.dialer")
		}
		reused := c.uses > 0
		c.uses++
		before := c.in
		_ = c.SetDeadline(time.Now().Add(r.FirstByteTimeout))
		// While the upstream works on its answer (a non-streamed completion
		// can take minutes) the watchdog checks that the client is still
		// there; if it left, closing the connection stops the generation.
		s.watchWaiting(c)
		bw := r.client.AcquireWriter(c)
		err = req.Write(bw)
		if err == nil {
			err = bw.Flush()
		}
		r.client.ReleaseWriter(bw)
		if err == nil {
			err = readResponseHeader(&s.hdr, c.br, head)
		}
		s.unwatchWaiting()
		if err != nil {
			r.client.CloseConn(cc)
			if s.reason.Load() != nil {
				return err
			}
			if reused && attempt == 0 && c.in == before && retryable(err) {
				continue
			}
			return err
		}
		_ = c.SetDeadline(time.Time{})
		s.cc, s.up = cc, c
		s.closeAfter = s.hdr.ConnectionClose() || req.Header.ConnectionClose()
		s.body.reset(c.br, bodyModeOf(&s.hdr, head), int64(max(s.hdr.ContentLength(), 0)))
		if s.body.mode == bodyClose {
			s.closeAfter = true
		}
		return nil
	}
}

// readResponseHeader reads the status line and headers, skipping interim
// 1xx responses (100 Continue, 103 Early Hints).
func readResponseHeader(h *fasthttp.ResponseHeader, br *bufio.Reader, head bool) error {
	for {
		h.Reset()
		if head {
			h.SetNoDefaultContentType(true)
		}
		if err := h.Read(br); err != nil {
			return err
		}
		if code := h.StatusCode(); code >= 200 || code == fasthttp.StatusSwitchingProtocols {
			return nil
		}
	}
}

func bodyModeOf(h *fasthttp.ResponseHeader, head bool) bodyMode {
	code := h.StatusCode()
	switch cl := h.ContentLength(); {
	case head || code < 200 || code == fasthttp.StatusNoContent || code == fasthttp.StatusNotModified:
		return bodyNone
	case cl >= 0:
		return bodyFixed
	case cl == -1:
		return bodyChunked
	}
	return bodyClose
}

// retryable reports whether err looks like a keep-alive connection the
// upstream had already closed.
func retryable(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, fasthttp.ErrConnectionClosed)
}

// appendEscapedPath appends the decoded request path p percent-encoded
// again. The relay routes on fasthttp's decoded, normalized path, and the
// upstream URI is written as is (DisablePathNormalizing): without this a
// client's %0d%0a or %20 reached the upstream's request line as raw bytes
// (a request line with spaces, or one split into headers), and %25 became a
// bare '%' that the upstream would decode a second time. Bytes other than
// RFC 3986 pchar and '/' are encoded; the common path is copied as is.
func appendEscapedPath(dst, p []byte) []byte {
	for _, c := range p {
		if pathSafe(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xf])
	}
	return dst
}

const upperHex = "0123456789ABCDEF"

// pathSafe reports whether c may stand unencoded in a URI path: unreserved,
// sub-delims, ':', '@' and '/'.
func pathSafe(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '-', '.', '_', '~', '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=', ':', '@', '/':
		return true
	}
	return false
}

// statusClientClosed is logged for a client that left before the upstream
// answered (nginx's 499); the client never sees it.
const statusClientClosed = 499
