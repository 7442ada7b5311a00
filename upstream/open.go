package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// Request is what Open needs from the client's request.
//
// When Ctx is the client's *fasthttp.RequestCtx, the path goes upstream as
// the client sent it (its URI's PathOriginal: percent-encoding, "//" and
// all), after the checks of clientPath; otherwise Path goes, re-encoded
// (appendEscapedPath).
type Request struct {
	Ctx    context.Context
	Header *fasthttp.RequestHeader
	Method []byte
	Path   []byte // normalized request path: the route was found with it
	Query  []byte // raw query string, without '?'
	Body   []byte
	Client net.Conn
	// Rate is the request's rate-limit decision as its answer's headers
	// say it, for the relay's own answer to a stream cut before its body.
	Rate RateLimit

	raw []byte // the client's path as sent, checked by Open; nil: Path re-encoded
}

// Open sends the request to one of the route's targets and waits for the
// response headers, which it copies to resp (the client's response). A
// failure the route fails over on (see FailoverOptions) sends the request,
// body and all, to another target, as long as nothing has gone to the
// client: before the headers, or after them and before the first byte of
// the body (an attempt that may be followed by another waits for that
// byte: firstbody.go). On success the returned Stream must be set as resp's
// body with SetBody; on failure the error type and client status say why,
// and nothing was written to resp. The record's upstream says which target served, and
// with more than one attempt its response headers carry
// "x-relay-attempts": each target tried and its status or error.
func (r *Route) Open(in *Request, rec *record.Record, resp *fasthttp.Response, wd *Watchdog, finish Finisher) (*Stream, string, int, error) {
	if !r.Configured() {
		return nil, record.ErrUpstreamConfig, fasthttp.StatusBadGateway, ErrNoProviderKey
	}
	raw, err := r.clientPath(in)
	if err != nil {
		return nil, record.ErrBadRequest, fasthttp.StatusBadRequest, err
	}
	in.raw = raw
	var tries [MaxAttempts]attempt
	var tried uint64
	n := 0
	for {
		if n > 0 && clientLeft(in) {
			// A connect is not watched (the watchdog takes the client
			// once there is a connection): a client that left during
			// one gets no other attempt.
			rec.ResponseHeaders = appendAttempts(rec.ResponseHeaders[:0], tries[:n], true)
			return nil, record.ErrClientClosed, StatusClientClosed, errClientLeft
		}
		t, probe := r.pool.pick(tried)
		pk := picked{probe: probe, epoch: t.health.epoch.Load()}
		tried |= t.bit
		rec.Upstream = t.recName
		// An attempt whose connect or wait the whole request's Timeout
		// cuts short (connectBudget, headDeadline) did not give the
		// target its connect or first-byte time.
		left := time.Until(rec.Start.Add(t.route.Timeout))
		short := t.route.Timeout > 0 && (left < t.route.FirstByteTimeout || left < t.route.ConnectTimeout)
		s, errType, status, err := t.route.exchangeOnce(in, rec, wd, finish)
		n++
		last := n >= r.Failover.MaxAttempts || r.pool.left(tried) == 0 || t.route.outOfTime(rec.Start)
		var head time.Duration
		awaited := false
		if err == nil {
			head = time.Since(rec.Start)
			// Nothing has gone to the client until the body's first
			// byte: a target that fails before it is failed over from
			// as one that failed before its head (firstbody.go).
			if !last && r.awaitsBody(s.hdr.StatusCode()) {
				awaited = true
				if errType, status, err = s.awaitBody(); err != nil {
					s.discard()
					rec.TTFB = record.None
				}
			}
		}
		if err != nil {
			tries[n-1] = attempt{label: t.label, errType: errType}
			// The request's Timeout ended the attempt: its connect or
			// head wait cut short, or the wait for the body's first
			// byte (awaitBody waits up to the request's end).
			cut := (short || awaited) && t.route.outOfTime(rec.Start) &&
				(errType == record.ErrUpstreamTimeout || errType == record.ErrUpstreamConnect)
			if status == StatusClientClosed || errType == record.ErrShuttingDown || cut {
				// The client left, the relay is shutting down (its
				// connect given up), or the request ran out of time: no
				// verdict on the target, no other attempt.
				t.report(outcomeNeutral, pk, 0, &r.Health, r.Logger, errType)
				rec.ResponseHeaders = appendAttempts(rec.ResponseHeaders[:0], tries[:n], true)
				return nil, errType, status, err
			}
			verdict := outcomeFailed
			if errors.Is(err, fasthttp.ErrNoFreeConns) {
				// The relay's own max_conns ran out: no word on the
				// target (healthy targets were ejected for it).
				verdict = outcomeNeutral
			}
			t.report(verdict, pk, 0, &r.Health, r.Logger, failReason(errType, err))
			if last || !r.failsOverOn(errType, 0) {
				rec.ResponseHeaders = appendAttempts(rec.ResponseHeaders[:0], tries[:n], true)
				return nil, errType, status, err
			}
			continue
		}
		code := s.hdr.StatusCode()
		tries[n-1] = attempt{label: t.label, status: code}
		switch {
		case code == fasthttp.StatusTooManyRequests:
			ra := retryAfter(&s.hdr)
			t.report(outcomeFailed, pk, ra, &r.Health, r.Logger, "status 429")
		case code >= 500 && code <= 599:
			t.report(outcomeFailed, pk, 0, &r.Health, r.Logger, "status "+statusText(code))
		case awaited:
			s.succeeded(t, r, pk)
		default:
			// The body's first byte has not come yet: the stream
			// reports the target when it does, or when it is cut
			// before it (settleHealth).
			s.pending, s.pendingOf, s.pendingPick = t, r, pk
		}
		if !last && r.failsOverOn("", code) {
			s.discard()
			continue
		}
		r.commit(s, rec, resp, head)
		if n > 1 {
			rec.ResponseHeaders = appendAttempts(rec.ResponseHeaders, tries[:n], false)
		}
		return s, "", 0, nil
	}
}

// attempt is the outcome of one try of a request.
type attempt struct {
	label   string
	status  int
	errType string
}

// failsOverOn reports whether an attempt that ended with errType (before
// the headers) or status code goes to another target.
func (r *Route) failsOverOn(errType string, code int) bool {
	f := r.failover
	switch errType {
	case "":
	case record.ErrUpstreamConnect, record.ErrUpstreamReset:
		return f.connect
	case record.ErrUpstreamTimeout:
		return f.timeout
	default:
		return false
	}
	return code == fasthttp.StatusTooManyRequests && f.tooMany || code >= 500 && code <= 599 && f.server
}

// exchangeOnce sends the request to this route (one target) and reads the
// response headers into the returned stream, which is not committed yet.
func (r *Route) exchangeOnce(in *Request, rec *record.Record, wd *Watchdog, finish Finisher) (*Stream, string, int, error) {
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	r.buildRequest(req, in, rec)

	s := streamPool.Get().(*Stream)
	s.route, s.rec, s.finish, s.wd = r, rec, finish, wd
	s.client = in.Client
	s.rctx, _ = in.Ctx.(*fasthttp.RequestCtx)
	s.rate = in.Rate
	s.start = rec.Start
	if err := s.exchange(r, req); err != nil {
		errType, status := classifyOpenError(err)
		if p := s.reason.Load(); p != nil {
			// The watchdog saw the client leave while the upstream thought.
			errType, status = *p, cutStatus(*p)
		}
		s.release()
		rec.TTFB = record.None
		return nil, errType, status, err
	}
	return s, "", 0, nil
}

// commit makes s the answer: the record's first byte (head: when its
// response head came) and status, and the upstream's status (with its
// reason phrase for a code fasthttp has none for: setStatus) and headers
// copied to the client's response.
func (r *Route) commit(s *Stream, rec *record.Record, resp *fasthttp.Response, head time.Duration) {
	rec.TTFB = head
	status := s.hdr.StatusCode()
	rec.Status = status
	if status >= 400 {
		rec.ErrorType = record.ErrUpstreamStatus
	}
	// The target's route masks its key (a pool's targets each have theirs).
	s.route.setStatus(resp, status, s.hdr.StatusMessage())
	resp.Header.SetNoDefaultContentType(true) // the upstream's, or none
	s.route.maskKeyInResponse(&s.hdr)
	s.mask.start(s.route, status)
	rec.ResponseHeaders = copyResponseHeaders(&resp.Header, &s.hdr, rec.ResponseHeaders[:0])
	// "x-relay-attempts" in a row is the relay's record of its attempts
	// (appendAttempts): an upstream's own field of that name is not
	// stored, so that it can neither forge the record nor name it twice.
	rec.ResponseHeaders = dropMember(rec.ResponseHeaders, attemptsMember)
}

// attemptsMember opens the "x-relay-attempts" member of a captured-headers
// object: in valid JSON a '"' that is not escaped only delimits a string,
// and a string followed by ':' is a member's name.
const attemptsMember = `"x-relay-attempts":"`

// dropMember removes from the JSON object of captured headers obj the
// member that begins with member (its name, ':' and the value's opening
// quote), if there is one; obj names each member once (header.go). It
// does not allocate.
func dropMember(obj []byte, member string) []byte {
	i := bytes.Index(obj, []byte(member))
	if i < 0 {
		return obj
	}
	j := i + len(member)
	for j < len(obj) && obj[j] != '"' {
		if obj[j] == '\\' {
			j++
		}
		j++
	}
	j++ // past the closing quote
	if j > len(obj) {
		return obj // not a captured object: left as it is
	}
	switch {
	case i > 0 && obj[i-1] == ',':
		i--
	case j < len(obj) && obj[j] == ',':
		j++
	}
	return append(obj[:i], obj[j:]...)
}

// discard drops an answer the route fails over from: its connection is
// closed (its body unread) and s goes back to the pool.
func (s *Stream) discard() {
	s.releaseConn(false)
	s.release()
}

// appendAttempts adds "x-relay-attempts" to the JSON object of response
// headers in dst ("" when alone: a new object): each attempt as
// label=status or label=error_type, space-separated.
func appendAttempts(dst []byte, tries []attempt, alone bool) []byte {
	if len(tries) < 2 && !alone {
		return dst
	}
	if alone {
		if len(tries) < 2 {
			return dst
		}
		dst = append(dst[:0], '{')
	} else {
		dst = openMember(dst)
	}
	dst = append(dst, `"x-relay-attempts":"`...)
	for i, a := range tries {
		if i > 0 {
			dst = append(dst, ' ')
		}
		dst = appendJSONInner(dst, a.label)
		dst = append(dst, '=')
		if a.errType != "" {
			dst = append(dst, a.errType...)
		} else {
			dst = strconv.AppendInt(dst, int64(a.status), 10)
		}
	}
	return append(dst, '"', '}')
}

// appendJSONInner appends s escaped as inside a JSON string.
func appendJSONInner(dst []byte, s string) []byte {
	n := len(dst)
	dst = appendJSONString(dst, []byte(s)) // no allocation: the conversion does not escape
	copy(dst[n:], dst[n+1:len(dst)-1])
	return dst[:len(dst)-2]
}

// statusText is the decimal code of a 5xx, for log messages.
func statusText(code int) string { return strconv.Itoa(code) }

// buildRequest fills req: upstream URL, the client's end-to-end headers, the
// provider key, the body as the client sent it (or with include_usage).
//
// The request line's target is built here: the upstream URL's path, then
// the client's path as it sent it (appendRawPath; clientPath checked it)
// or, without it, the routed path escaped again (appendEscapedPath), then
// the query (appendQuery); it is set as it is: req's URI is never parsed
// or built (req.Write then takes the target and Host as they are set).
func (r *Route) buildRequest(req *fasthttp.Request, in *Request, rec *record.Record) {
	var tb [256]byte
	target := append(tb[:0], r.basePath...)
	if in.raw != nil {
		target = appendRawPath(target, in.raw)
	} else {
		target = appendEscapedPath(target, in.Path)
	}
	if len(target) == 0 {
		target = append(target, '/')
	}
	target = appendQuery(target, in.Query, "")
	req.Header.SetRequestURIBytes(target)
	req.Header.SetMethodBytes(in.Method)
	req.Header.SetHostBytes(r.host)
	// The client's Content-Type or none: fasthttp's default
	// (application/octet-stream) went upstream on bodies sent without one,
	// unlike the row says, and a provider may refuse it.
	req.Header.SetNoDefaultContentType(true)
	rec.RequestHeaders = r.copyRequestHeaders(&req.Header, in.Header, rec.RequestHeaders[:0])
	req.SetBodyRaw(in.Body)
}

// headDeadline is when an attempt that starts now stops waiting for the
// response head: FirstByteTimeout from now, but never past the whole
// request's Timeout from start (failover tries do not add up past it; a
// zero start sets no such bound).
func (r *Route) headDeadline(start time.Time) time.Time {
	d := time.Now().Add(r.FirstByteTimeout)
	if end := start.Add(r.Timeout); r.Timeout > 0 && !start.IsZero() && end.Before(d) {
		return end
	}
	return d
}

// connectBudget is how long an attempt that starts now may wait for a
// free connection and connect: ConnectTimeout, but never past the whole
// request's Timeout from start (a zero start sets no such bound). The
// connect ran its whole ConnectTimeout, past the request's end, and then
// the next target's.
func (r *Route) connectBudget(start time.Time) time.Duration {
	d := r.ConnectTimeout
	if r.Timeout > 0 && !start.IsZero() {
		if left := time.Until(start.Add(r.Timeout)); left < d {
			d = max(left, time.Millisecond)
		}
	}
	return d
}

// outOfTime reports whether a request that started at start has no time
// left to wait for a head within its whole request's Timeout.
func (r *Route) outOfTime(start time.Time) bool {
	return r.Timeout > 0 && !start.IsZero() && time.Since(start) >= r.Timeout
}

// exchange writes req on a pooled connection and reads the response
// headers, leaving s ready to read the body. A reused keep-alive connection
// that the upstream had closed shows up as an error before any byte came
// back; then nothing was processed and the request is sent once more on a
// fresh connection (resendable says when that is surely the case).
func (s *Stream) exchange(r *Route, req *fasthttp.Request) error {
	head := req.Header.IsHead()
	for attempt := 0; ; attempt++ {
		cc, err := r.client.AcquireConn(r.connectBudget(s.start), false)
		if err != nil {
			return err
		}
		c, ok := cc.Conn().(*conn)
		if !ok {
			r.client.CloseConn(cc)
			return errors.New("BUG: upstream connection not dialed by upstream.dialer")
		}
		reused := c.uses > 0
		if reused && c.unreadWaiting() {
			// Not this request's answer: the connection goes, another is
			// taken (the pool runs out of such ones: a new one is fresh).
			r.client.CloseConn(cc)
			attempt--
			continue
		}
		c.uses++
		before := c.in
		sent := mono.Now()
		_ = c.SetDeadline(r.headDeadline(s.start))
		// While the upstream works on its answer (a non-streamed completion
		// can take minutes) the watchdog checks that the client is still
		// there; if it left, closing the connection stops the generation.
		s.watchWaiting(c)
		var held *heldRequest
		early := false // the upstream answered before it took the whole request
		if reused && c.sock != nil && len(req.Body()) <= maxHeldRequestBody {
			held, err = holdRequest(req)
			c.unsent = held.b
		} else {
			bw := r.client.AcquireWriter(c)
			err = req.Write(bw)
			if err == nil {
				err = bw.Flush()
			}
			r.client.ReleaseWriter(bw)
			if err != nil && peerStopped(err) {
				// An upstream may refuse a body as it comes (413 to an
				// upload too large, 401 to a bad key) and close without
				// reading the rest: its answer is waiting, and it is the
				// answer (RFC 9112 9.5), not a reset that ejects the target.
				c.acquireReader()
				if readResponseHeader(&s.hdr, c.br, head) == nil {
					err, early = nil, true
				}
			}
		}
		if err == nil && !early {
			c.acquireReader()
			err = readResponseHeader(&s.hdr, c.br, head)
		}
		if err == nil && s.hdr.StatusCode() == fasthttp.StatusSwitchingProtocols {
			err = errUnaskedSwitch // the connection goes (below)
		}
		if held != nil {
			c.unsent = nil
			held.release()
		}
		s.unwatchWaiting()
		if err != nil {
			r.client.CloseConn(cc)
			c.releaseReader()
			if s.reason.Load() != nil {
				return err
			}
			if reused && attempt == 0 && c.in == before && retryable(err) && resendable(req, c, sent) {
				continue
			}
			return err
		}
		_ = c.SetDeadline(time.Time{})
		s.cc, s.up = cc, c
		// A 101 on this route (the relay asked for no upgrade) switched
		// the connection to another protocol: never reused.
		s.closeAfter = early || s.hdr.ConnectionClose() || req.Header.ConnectionClose() || s.hdr.StatusCode() == fasthttp.StatusSwitchingProtocols
		// The body is read through the stream's own buffer, which is given
		// back whenever it is empty; the head's reader goes back at once.
		s.rb.reset(c, c.raw, &c.in)
		s.rb.pool = r.bufs
		if n := c.br.Buffered(); n > 0 {
			p, _ := c.br.Peek(n)
			s.rb.preload(p)
		}
		c.releaseReader()
		s.body.reset(&s.rb, bodyModeOf(&s.hdr, head), int64(max(s.hdr.ContentLength(), 0)))
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
		// What the upstream sent, no more: fasthttp would give an answer
		// without Content-Type its default (text/plain), which reached the
		// client and the row as the upstream's.
		h.SetNoDefaultContentType(true)
		if err := awaitHeadEnd(br); err != nil {
			return err
		}
		if err := checkStatusCode(br); err != nil {
			return err
		}
		lengthLine := hasLengthLine(peekHead(br))
		if err := h.Read(br); err != nil {
			return err
		}
		if lengthLine {
			closeIfFramedTwice(h)
		}
		if code := h.StatusCode(); code >= 200 || code == fasthttp.StatusSwitchingProtocols {
			return nil
		}
	}
}

// errBadStatus is an answer whose status code is outside 100..599: fasthttp
// read "000" as 200 (the client and the row got a success), took "099" for
// an interim answer and waited for another until the timeout, and relayed
// "600" as it came, no 5xx for failover or health (RFC 9110 15: a client
// treats such a code as 5xx; the relay's answer is 502, the connection
// closed).
var errBadStatus = errors.New("upstream: status code outside 100..599")

// checkStatusCode looks at the status line about to be read from br (past
// the empty lines fasthttp skips before it) and refuses a code outside
// 100..599. A line too short to hold one, or whose code is not three
// digits, is left to fasthttp, which refuses it.
func checkStatusCode(br *bufio.Reader) error {
	skip := 0
	for ; ; skip++ {
		b, err := br.Peek(skip + 1)
		if err != nil || skip >= maxLeadingEOL {
			return nil
		}
		if c := b[skip]; c != '\r' && c != '\n' {
			break
		}
	}
	b, err := br.Peek(skip + len("HTTP/1.1 200"))
	if err != nil {
		return nil
	}
	if b = b[skip:]; b[8] != ' ' {
		return nil
	}
	code := 0
	for _, c := range b[9:12] {
		if c < '0' || c > '9' {
			return nil
		}
		code = 10*code + int(c-'0')
	}
	if code < 100 || code > 599 {
		return errBadStatus
	}
	return nil
}

// errBareLFHead is an answer head whose blank line ends in a bare LF
// ("\n\n"): fasthttp waits for a CRLFCRLF that never comes, and the
// client waited first_byte_timeout (120 s by default) for a 504 from an
// upstream that had answered, malformed, at once. It is refused at once
// instead, as fasthttp refuses the same head when the upstream closes
// after it: 502, the connection closed.
var errBareLFHead = errors.New("upstream: answer head ended by a bare LF, not CRLF")

// awaitHeadEnd waits until br holds the blank line that ends the answer
// head about to be read, and refuses a head that a bare LF ends. Any other
// failure to peek (the connection ended, a timeout, a head larger than the
// buffer) is left to fasthttp's read, which reports it.
func awaitHeadEnd(br *bufio.Reader) error {
	for n := 1; ; {
		if _, err := br.Peek(n); err != nil {
			return nil
		}
		b, _ := br.Peek(br.Buffered())
		switch headEnd(b) {
		case headEndCRLF:
			return nil
		case headEndBare:
			return errBareLFHead
		}
		n = len(b) + 1
	}
}

// What headEnd found.
const (
	headEndNone = iota // no blank line yet
	headEndCRLF        // the first blank line is CRLF after a CRLF
	headEndBare        // the first blank line, or the line end before it, is a bare LF
)

// headEnd finds the first blank line of the head at the start of b, past
// the line ends fasthttp skips before a status line.
func headEnd(b []byte) int {
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return headEndNone
		}
		i += j + 1 // past a line's LF
		rest := b[i:]
		switch {
		case len(rest) == 0 || (rest[0] == '\r' && len(rest) == 1):
			return headEndNone
		case rest[0] == '\n':
			return headEndBare
		case rest[0] == '\r' && rest[1] == '\n':
			if b[i-2] == '\r' {
				return headEndCRLF
			}
			return headEndBare
		}
	}
}

// maxLeadingEOL bounds the line ends checkStatusCode skips before a
// status line; past it fasthttp judges the answer.
const maxLeadingEOL = 256

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

// peerStopped reports whether a failed write says the upstream closed or
// reset the connection.
func peerStopped(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// resendable reports whether a request that failed on a reused connection
// without a byte of answer, its sending begun at sent (mono), may go once
// more on another connection. A keep-alive connection the upstream closed
// as it sat idle (its FIN on the way as the request went out) fails within
// about one round trip of the sending; one whose upstream took the request,
// worked on it and then dropped the connection fails later, and sending a
// POST again would run (and bill) the generation twice, unrecorded: an
// upstream that took the request is answered 502 upstream_reset, as Go's
// and nginx's clients leave such a request. The round trip is the
// connection's TCP connect time, plus staleSlack for a busy machine's
// scheduling. Idempotent methods and requests with an Idempotency-Key are
// sent again whenever they fail so.
func resendable(req *fasthttp.Request, c *conn, sent int64) bool {
	if time.Duration(mono.Now()-sent) <= c.rtt+staleSlack {
		return true
	}
	switch string(req.Header.Method()) {
	case fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodOptions, fasthttp.MethodTrace,
		fasthttp.MethodPut, fasthttp.MethodDelete:
		return true
	}
	return len(req.Header.Peek("Idempotency-Key")) > 0 || len(req.Header.Peek("X-Idempotency-Key")) > 0
}

// staleSlack is what resendable allows past a connection's round trip for
// the failure of a stale keep-alive connection to be seen.
var staleSlack = 50 * time.Millisecond

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
func appendEscapedPath(dst, p []byte) []byte { return appendPath(dst, p, false) }

// appendRawPath appends the client's path p as it sent it: its
// percent-escapes stay as they are (%2F is not a '/', %20 not a space), and
// so do "//" and every other byte that may stand in a URI path. A byte that
// may not (fasthttp's parser lets through bytes >= 0x80 and a few
// characters RFC 3986 excludes, such as '"', '\' or '|') is encoded, so
// the request line stays one valid line whatever the client sent.
func appendRawPath(dst, p []byte) []byte { return appendPath(dst, p, true) }

// appendPath appends p with every byte but RFC 3986 pchar and '/' (and '%'
// when escaped says p's escapes are to stay) percent-encoded.
func appendPath(dst, p []byte, escaped bool) []byte {
	for _, c := range p {
		if pathSafe(c) || escaped && c == '%' {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', upperHex[c>>4], upperHex[c&0xf])
	}
	return dst
}

const upperHex = "0123456789ABCDEF"

// ErrDotSegment is why clientPath refuses a path (400 bad_request).
var ErrDotSegment = errors.New("the request path has a dot segment (\".\" or \"..\", maybe percent-encoded)")

// clientPath returns the path the client sent, to go upstream in place of
// the routed one, or nil when the client's request is not at hand (Ctx is
// not its *fasthttp.RequestCtx).
//
// The route was found with fasthttp's normalized path: percent-decoded,
// "//" collapsed, "." and ".." segments resolved. The path forwarded must
// not reach anything on the upstream outside what the route maps, however
// the upstream reads it, so the client's path is refused (400
// bad_request) when it has a dot segment: "." or "..", with or without
// percent-encoded dots, between '/', '\' or their encodings (%2F, %5C),
// optionally followed by ";params" (ErrDotSegment). An upstream that
// resolves it (every HTTP server does, some after decoding %2F) could
// climb out of the upstream URL's base path or of the route's prefix.
//
// When the route's path does not stand in the client's literally, as an
// exact route's whole path or a prefix route's prefix followed by '/' or
// the end ("/v1%2Fchat/completions" or "/v1//chat/completions" for a route
// on "/v1/chat/completions", which the relay's routing reads as that path
// and an upstream may read as another), the routed (normalized) path goes
// instead, as it did before the client's path was kept: nil, no error. A
// base URL written with a trailing '/' gives such paths.
//
// Past the route's path the client's bytes are its own: %2F stays %2F
// (Gemini's "models%2Fgemini-x:generateContent"), "//" stays "//".
func (r *Route) clientPath(in *Request) ([]byte, error) {
	rc, ok := in.Ctx.(*fasthttp.RequestCtx)
	if !ok {
		return nil, nil
	}
	p := rc.URI().PathOriginal()
	if hasDotSegment(p) {
		return nil, ErrDotSegment
	}
	if !r.spelledOut(p) {
		return nil, nil // the routed path goes, as nginx's merge_slashes would
	}
	return p, nil
}

// hasDotSegment reports whether the raw path p has a "." or ".." segment,
// read as an upstream that decodes everything might: %2E is a dot, '/',
// '\', %2F and %5C separate segments, and a segment's ";params" do not
// count. It does not allocate.
func hasDotSegment(p []byte) bool {
	dots := 0       // dots since the last separator; -1: the segment has something else
	params := false // past a ';' in this segment
	for i := 0; i <= len(p); i++ {
		c := byte('/') // the end closes the last segment
		if i < len(p) {
			c = p[i]
			if c == '%' && i+2 < len(p) {
				if d, ok := unhex2(p[i+1], p[i+2]); ok {
					c = d
					i += 2
				}
			}
		}
		switch {
		case c == '/' || c == '\\':
			if dots == 1 || dots == 2 {
				return true
			}
			dots, params = 0, false
		case params:
		case c == ';':
			params = true
		case c == '.' && dots >= 0:
			dots++
		default:
			dots = -1
		}
	}
	return false
}

// unhex2 decodes the two hex digits of a percent-escape.
func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	return x<<4 | y, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

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

// failReason is why an attempt failed, for the ejection's log line: the
// error type, and for a failed connect what the network or TLS said (a
// certificate that does not verify was told from a refused port by
// nothing). Only a connect's error is quoted: it names an address, never
// bytes of an answer.
func failReason(errType string, err error) string {
	var de *DialError
	if errors.As(err, &de) {
		return errType + " (" + de.Err.Error() + ")"
	}
	return errType
}

// errUnaskedSwitch is an upstream's 101 on an HTTP route: the relay asks
// for no upgrade, so the answer is broken (relayed, it reached the client
// as a 101 without Upgrade, the upstream's bytes after it dropped, and the
// row looked like a success).
var errUnaskedSwitch = errors.New("upstream: answered 101 Switching Protocols to a request that asked for no upgrade")

// errClientLeft ends a request whose client left between two attempts.
var errClientLeft = errors.New("upstream: the client left before an answer came")

// clientLeft reports whether the client of in has gone (clientGone).
func clientLeft(in *Request) bool {
	var b [1]byte
	return in.Client != nil && clientGone(in.Client, b[:])
}

// cutStatus is the status of a request the watchdog cut, for reason,
// before its answer began: 503 when the relay's shutdown cut it (its
// shutting_down as a request refused then has), else 499 (the client left).
func cutStatus(reason string) int {
	if reason == record.ErrShuttingDown {
		return fasthttp.StatusServiceUnavailable
	}
	return StatusClientClosed
}

// StatusClientClosed is logged for a client that left before the upstream
// answered (nginx's 499); the client never sees it.
const StatusClientClosed = 499
