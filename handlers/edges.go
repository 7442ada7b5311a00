package handlers

import (
	"bytes"

	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
)

// HTTP/1.1 edges fasthttp and Fiber leave open: what they accept that they
// should not, and what they wait on for read_timeout where an answer is due
// at once. Two layers close them:
//
//   - CheckRequest wraps the server's handler and sees every request fasthttp
//     parsed: an HTTP version it does not speak (505), a method Fiber does
//     not route (Fiber answered a plain-text 400 and kept the connection),
//     a header line ending in a bare LF (400). These get the JSON error, an
//     X-Request-Id and a row, and the connection is closed.
//   - CheckRequestStart looks at the first bytes of a request as they are
//     read from the connection, for what never reaches a handler: a TLS
//     ClientHello (or other binary) on a plain-HTTP port, and a request
//     line or header block ending in bare LFs, which fasthttp waits on until
//     read_timeout (it wants a CRLFCRLF) and then answers 408. These get the
//     JSON error at once, no row (there is no request), and a close. On the
//     same pass it finds a header field with a control character, which
//     fasthttp refuses without handing the request over: the head is kept
//     for the error handler to log it (badhead.go).
//
// Bare LF is refused rather than accepted as nginx does: RFC 9112 2.2 allows
// both, and a proxy in front of the relay that does not end lines at a bare
// LF would read such a header block differently (a smuggling primitive).

// CheckRequest wraps next, the server's request handler (Fiber's), and
// refuses what next would serve wrongly; see above.
func (h *Relay) CheckRequest(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		dropHead(ctx) // read whole (kepthead.go)
		status, msg := requestEdge(&ctx.Request.Header)
		if status == 0 {
			next(ctx)
			return
		}
		ctx.SetConnectionClose()
		h.rejectEarly(ctx, status, record.ErrBadRequest, msg)
	}
}

// requestEdge returns the status and message a parsed request is refused
// with, or 0.
func requestEdge(hdr *fasthttp.RequestHeader) (int, string) {
	// fasthttp lets any "HTTP/d.d" through and serves a 1.x minor it does
	// not know as HTTP/1.0 (closed after the answer; RFC 9110 2.5 and nginx
	// would take it for 1.1, which fasthttp decided at the head); another
	// major is 505, as nginx answers HTTP/2.0 and HTTP/3.0 (it answers
	// HTTP/0.9 with 400; 505 is the RFC's answer to a major version not
	// supported).
	if p := hdr.Protocol(); len(p) != len("HTTP/1.1") || p[5] != '1' {
		return fasthttp.StatusHTTPVersionNotSupported, "HTTP version not supported"
	}
	if !knownMethod(hdr.Method()) {
		return fasthttp.StatusBadRequest, "unknown request method"
	}
	switch string(hdr.Method()) {
	case fasthttp.MethodTrace, fasthttp.MethodConnect:
		// No provider API takes them: a TRACE echoes the request it got,
		// the provider key with it, and a CONNECT asks for a tunnel.
		return fasthttp.StatusMethodNotAllowed, "method " + string(hdr.Method()) + " not allowed"
	}
	raw := hdr.RawHeaders()
	if bareLF(raw) {
		return fasthttp.StatusBadRequest, "header line ends in a bare LF"
	}
	if obsFold(raw) {
		return fasthttp.StatusBadRequest, "header line folded (obs-fold)"
	}
	if len(hdr.PeekBytes(hdrTenant)) > 0 && fieldRepeated(raw, "x-tenant-id:") {
		// The gate judged the first, the row stored both joined, and a
		// proxy in front that joins them sent a value no key allows.
		return fasthttp.StatusBadRequest, "X-Tenant-ID repeated"
	}
	if fieldRepeated(raw, "content-type:") {
		// fasthttp keeps one Content-Type, the last: the upstream got
		// the other (none at all when the last was empty), and the row
		// the same, while the client, or a proxy in front, meant another.
		return fasthttp.StatusBadRequest, "Content-Type repeated"
	}
	for range hdr.Trailers() {
		// fasthttp reads a chunked body's trailer fields into the header
		// (RFC 9110 6.5.1 forbids the merge): a trailing X-Tenant-ID was
		// judged as the request's own, and the row showed none. No
		// provider API takes request trailers.
		return fasthttp.StatusBadRequest, "request trailers are not supported"
	}
	return 0, ""
}

// knownMethod reports whether m is one of the methods Fiber routes (its
// default RequestMethods). Methods are case-sensitive (RFC 9110 9.1): "get"
// is not GET.
func knownMethod(m []byte) bool {
	switch string(m) {
	case fasthttp.MethodPost, fasthttp.MethodGet, fasthttp.MethodHead, fasthttp.MethodPut, fasthttp.MethodDelete,
		fasthttp.MethodPatch, fasthttp.MethodOptions, fasthttp.MethodConnect, fasthttp.MethodTrace:
		return true
	}
	return false
}

// bareLF reports whether b holds an LF that is not preceded by a CR.
func bareLF(b []byte) bool {
	off := 0
	for {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			return false
		}
		off += i
		if off == 0 || b[off-1] != '\r' {
			return true
		}
		off++
	}
}

// obsFold reports whether the raw header block b holds a line that begins
// with a space or tab: a continuation of the line before (obs-fold, RFC
// 9112 5.2), or whitespace before the first field. fasthttp joins a fold
// to the line before; a proxy in front that does not would read another
// Content-Length, Authorization or field of its own there, as with a bare
// LF: refused (400), as the RFC allows.
func obsFold(b []byte) bool {
	if len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		return true
	}
	for off := 0; ; {
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 || off+i+1 >= len(b) {
			return false
		}
		off += i + 1
		if b[off] == ' ' || b[off] == '\t' {
			return true
		}
	}
}

// fieldRepeated reports whether more than one line of the raw header
// block b begins with prefix ("name:", lower case), whatever its case.
func fieldRepeated(b []byte, prefix string) bool {
	seen := false
	for len(b) > 0 {
		if len(b) >= len(prefix) && asciiPrefixFold(b, prefix) {
			if seen {
				return true
			}
			seen = true
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return false
		}
		b = b[i+1:]
	}
	return false
}

// asciiPrefixFold reports whether b begins with prefix (lower case ASCII),
// whatever the case of b's letters.
func asciiPrefixFold(b []byte, prefix string) bool {
	for i := range len(prefix) {
		if c := b[i]; c|0x20 != prefix[i] && c != prefix[i] {
			return false
		}
	}
	return true
}

// Canned answers of CheckRequestStart: built once, written as they are.
var (
	respTLSOnPlain = cannedError(fasthttp.StatusBadRequest, "TLS handshake sent to a plain-HTTP port")
	respNotHTTP    = cannedError(fasthttp.StatusBadRequest, "malformed request")
	respBareLF     = cannedError(fasthttp.StatusBadRequest, "request line or header line ends in a bare LF")
)

// cannedError is a whole HTTP/1.1 response carrying the relay's JSON error,
// closing the connection.
func cannedError(status int, msg string) []byte {
	return upstream.AppendErrorResponse(nil, status, record.ErrBadRequest, msg, nil, nil)
}

// CheckRequestStart inspects b, the bytes of one read from a client
// connection that begins a request, and returns the response to write
// before closing the connection, or nil to go on. connStart is true for the
// first read on the connection; later reads that begin a request (after a
// response) are only judged when they start with a whole request line, as
// a pipelined request may have been read before and b may be the middle of
// one. Requests pipelined behind the first in b are judged too, as far as
// their framing can be followed (no body, a Content-Length or a chunked
// body within b); when one of those is refused, cut is where it begins:
// the requests before it are served (b[:cut]) and resp is written when the
// next request would begin (one bad request refused the good ones before
// it, unanswered). Only b is looked at: a request line or header block
// that spans reads is left to fasthttp and CheckRequest. When the first
// request's header block is whole in b and a field in it has a control
// character, bad is the head to keep for the error handler (BadHead). It
// does not allocate, but for bad.
func CheckRequestStart(b []byte, connStart bool) (resp []byte, cut int, bad *BadHead) {
	if len(b) == 0 {
		return nil, 0, nil
	}
	if connStart {
		switch c := b[0]; {
		case c == 0x16: // TLS record type handshake: a ClientHello
			return respTLSOnPlain, 0, nil
		case !tokenByte[c] && c != '\r' && c != '\n':
			// No request line starts so; fasthttp would wait for an LF
			// that a binary protocol may never send.
			return respNotHTTP, 0, nil
		}
	}
	whole := len(b)
	for i := range maxPipelined {
		r, rest, bh := checkHead(b, i == 0)
		if i == 0 {
			bad = bh
		}
		if r != nil {
			return r, whole - len(b), bad
		}
		if len(rest) == 0 {
			return nil, 0, bad
		}
		b = rest
	}
	return nil, 0, bad
}

// maxPipelined bounds the requests CheckRequestStart follows in one read.
const maxPipelined = 16

// checkHead checks the request line and header lines at the start of b
// for bare LFs. rest is what follows the request's body when b holds the
// whole request and its framing is known, else nil. With scan, it also
// looks for a control character in the header lines and returns the head
// to keep when it finds one (bad) and b holds the whole header block.
func checkHead(b []byte, scan bool) (resp, rest []byte, bad *BadHead) {
	for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
		b = b[1:] // empty lines before the request line are ignored (RFC 9112 2.2)
	}
	lf := bytes.IndexByte(b, '\n')
	if lf < 0 || !isRequestLine(b[:lf]) {
		return nil, nil, nil
	}
	if lf == 0 || b[lf-1] != '\r' {
		return respBareLF, nil, nil
	}
	reqLine, fields := b[:lf+1], b[lf+1:]
	control := false
	bodyLen := 0
	for b = fields; len(b) > 0; b = b[lf+1:] {
		lf = bytes.IndexByte(b, '\n')
		if lf < 0 {
			return nil, nil, nil
		}
		if lf == 0 || b[lf-1] != '\r' {
			return respBareLF, nil, nil
		}
		if lf == 1 { // CRLF CRLF: the block ends here, the body may hold anything
			if control {
				bad = newBadHead(reqLine, fields[:len(fields)-len(b)])
			}
			b = b[2:]
			if bodyLen < 0 {
				bodyLen = chunkedLen(b)
			}
			if bodyLen < 0 || bodyLen > len(b) {
				return nil, nil, bad
			}
			return nil, b[bodyLen:], bad
		}
		line := b[:lf-1]
		control = control || (scan && hasControl(line))
		switch line[0] | 0x20 {
		case 'c':
			if v, ok := fieldValue(line, "content-length"); ok {
				bodyLen = smallLength(v)
			}
		case 't':
			if _, ok := fieldValue(line, "transfer-encoding"); ok {
				bodyLen = -1 // chunked: followed by chunkedLen
			}
		}
	}
	return nil, nil, nil
}

// chunkedLen returns the length of the chunked body at the start of b,
// its last chunk and empty trailer section included, or -1 when b does not
// hold it whole or it is not plain chunked framing (the server refuses
// that; nothing after it is followed then). Chunk sizes take at most 8 hex
// digits, chunk extensions are skipped.
func chunkedLen(b []byte) int {
	off := 0
	for range len(b) {
		lf := bytes.IndexByte(b[off:], '\n')
		if lf < 1 || b[off+lf-1] != '\r' {
			return -1
		}
		line := b[off : off+lf-1]
		size, digits := 0, 0
		for digits < len(line) && digits <= 8 && hexVal(line[digits]) >= 0 {
			size = size<<4 | hexVal(line[digits])
			digits++
		}
		if digits == 0 || digits > 8 || digits < len(line) && line[digits] != ';' && line[digits] != ' ' && line[digits] != '\t' {
			return -1
		}
		off += lf + 1
		if size == 0 {
			// The last chunk: an empty trailer section (trailers are
			// refused anyway: not followed).
			if len(b)-off < 2 || b[off] != '\r' || b[off+1] != '\n' {
				return -1
			}
			return off + 2
		}
		if len(b)-off < size+2 || b[off+size] != '\r' || b[off+size+1] != '\n' {
			return -1
		}
		off += size + 2
	}
	return -1
}

// hexVal is the value of the hex digit c, or -1.
func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// fieldValue returns the value of header line when its name is name (lower
// case), without surrounding spaces.
func fieldValue(line []byte, name string) ([]byte, bool) {
	if len(line) <= len(name) || line[len(name)] != ':' || !bytes.EqualFold(line[:len(name)], []byte(name)) {
		return nil, false
	}
	return bytes.TrimSpace(line[len(name)+1:]), true
}

// smallLength parses a Content-Length of up to 9 digits; -1 otherwise.
func smallLength(v []byte) int {
	if len(v) == 0 || len(v) > 9 {
		return -1
	}
	n := 0
	for _, c := range v {
		if !isDigit(c) {
			return -1
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// isRequestLine reports whether line (without its LF) is a request line:
// a method token, a space, a target, a space and "HTTP/d.d", with or
// without the CR.
func isRequestLine(line []byte) bool {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	n := len(line)
	if n < len("A / HTTP/1.1") {
		return false
	}
	v := line[n-len(" HTTP/1.1"):]
	if string(v[:6]) != " HTTP/" || v[7] != '.' || !isDigit(v[6]) || !isDigit(v[8]) {
		return false
	}
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 || sp >= n-len(" HTTP/1.1") {
		return false
	}
	for _, c := range line[:sp] {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// tokenByte marks the bytes of an RFC 9110 token (tchar).
var tokenByte = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
