package upstream

import (
	"bytes"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// headerClass is what the relay does with a header field, by its lower-case
// name: see classOf.
type headerClass uint8

const (
	// hopByHop: the field belongs to one connection (RFC 9110 7.6.1) or the
	// relay sets it itself; it is copied from neither side to the other.
	hopByHop headerClass = 1 << iota
	// clientOnly: a request field the caller sends to the relay that must
	// not reach the upstream: the relay key and the relay's own tenant
	// header. Accept-Encoding is dropped so the upstream answers in plain
	// bytes, which the relay can scan for the first token and store for
	// analysis.
	clientOnly
	// secret: redacted in captured header JSON.
	secret
)

// classOf returns the class of the lower-case field name lk (0 for a field
// copied and captured as it is). A switch rather than maps: the compiler
// dispatches on the length first, and a request's dozen fields cost no
// hashing.
func classOf(lk []byte) headerClass {
	switch string(lk) {
	case "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
		"te", "trailer", "transfer-encoding", "upgrade", "content-length", "host":
		return hopByHop
	case "proxy-authorization":
		return hopByHop | secret
	case "authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie":
		return clientOnly | secret
	case "x-tenant-id", "accept-encoding":
		return clientOnly
	case "set-cookie",
		// Browsers cannot set headers on a WebSocket handshake, so
		// providers take the key as a subprotocol
		// ("openai-insecure-api-key.<key>").
		"sec-websocket-protocol":
		return secret
	}
	return 0
}

// UpstreamRequestID is the name under which an upstream's own X-Request-Id
// (OpenAI sends one with every answer) reaches the client: X-Request-Id is
// the relay's, the id of the request's row, and a client reading it (the
// official SDKs do) must get that one alone. The row keeps the upstream's
// field under its own name in response_headers.
const UpstreamRequestID = "X-Upstream-Request-Id"

var upstreamRequestIDKey = []byte(UpstreamRequestID)

// validName reports whether k is an RFC 9110 token, as a field name must
// be. fasthttp's parser accepts names with spaces ("X A: 1"), which the
// relay would otherwise forward: another parser may read such a line
// differently (a request smuggling primitive) or refuse the whole request.
// Such fields are still captured, but not forwarded.
func validName(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		if !tokenChar[c] {
			return false
		}
	}
	return true
}

var tokenChar = func() (t [256]bool) {
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

// lowerKey returns an ASCII-lower-cased copy of k in buf (no allocation for
// names up to len(buf)); the string conversion in a map index does not
// allocate.
func lowerKey(buf *[64]byte, k []byte) []byte {
	if len(k) > len(buf) {
		return bytes.ToLower(k)
	}
	for i, c := range k {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(k)]
}

// listedInConnection reports whether the Connection header names key, which
// makes key hop-by-hop for this message.
func listedInConnection(conn, key []byte) bool {
	for len(conn) > 0 {
		var tok []byte
		tok, conn = nextToken(conn)
		if bytes.EqualFold(tok, key) {
			return true
		}
	}
	return false
}

// nextToken splits a comma-separated list's first element, trimmed, from
// the rest.
func nextToken(list []byte) (tok, rest []byte) {
	if i := bytes.IndexByte(list, ','); i >= 0 {
		return bytes.TrimSpace(list[:i]), list[i+1:]
	}
	return bytes.TrimSpace(list), nil
}

// connectionNames returns conn, a Connection header's value, when it
// lists a field that is not hop-by-hop already, for listedInConnection to
// look for; else nil. "keep-alive", which most clients send, then costs
// no search for each field.
func connectionNames(conn []byte) []byte {
	var lb [64]byte
	for rest := conn; len(rest) > 0; {
		var tok []byte
		tok, rest = nextToken(rest)
		if len(tok) > 0 && (len(tok) > len(lb) || classOf(lowerKey(&lb, tok))&hopByHop == 0) {
			return conn
		}
	}
	return nil
}

// copyRequestHeaders copies the client's end-to-end headers to the upstream
// request and appends them, redacted, as a JSON object to capture. Fields
// that are not forwarded (hop-by-hop, the relay's own, invalid names,
// underscores unless allowed) are captured all the same.
func (r *Route) copyRequestHeaders(dst *fasthttp.RequestHeader, src *fasthttp.RequestHeader, capture []byte) []byte {
	var lb [64]byte
	connHdr := connectionNames(src.Peek("Connection"))
	// The names come canonical from fasthttp's parse of the client's
	// request: adding them to dst need not canonicalize them again.
	dst.DisableNormalizing()
	capture = append(capture, '{')
	for k, v := range src.All() {
		lk := lowerKey(&lb, k)
		class := classOf(lk)
		if bytes.EqualFold(k, r.authKey) {
			class |= clientOnly | secret // the route's key header: the provider key's place
		}
		capture = appendHeaderJSON(capture, lk, v, class)
		if class&(hopByHop|clientOnly) != 0 || !validName(k) {
			continue
		}
		if !r.UnderscoreHeaders && bytes.IndexByte(k, '_') >= 0 {
			// nginx's default (underscores_in_headers off): a server
			// behind the upstream's own proxy may map "_" and "-" alike
			// (CGI does), so Transfer_Encoding or X_Tenant_Id could stand
			// for a header the relay never saw as such.
			continue
		}
		if len(connHdr) > 0 && listedInConnection(connHdr, k) {
			continue
		}
		switch string(lk) {
		case "content-type":
			dst.SetContentTypeBytes(v)
		case "user-agent":
			dst.SetUserAgentBytes(v)
		default:
			dst.AddBytesKV(k, v)
		}
	}
	capture = append(capture, '}')
	for _, h := range r.extra {
		if len(src.PeekBytes(h[0])) == 0 {
			dst.SetBytesKV(h[0], h[1])
		}
	}
	if r.authValue != nil {
		dst.SetBytesKV(r.authKey, r.authValue)
	}
	return capture
}

// CaptureRequestHeaders appends the request headers h, redacted, as the
// JSON object a row stores, for a request refused before an upstream
// request was built (copyRequestHeaders captures the others). r is the
// request's route (its key header is redacted too), nil for none.
func (r *Route) CaptureRequestHeaders(capture []byte, h *fasthttp.RequestHeader) []byte {
	var lb [64]byte
	var authKey []byte
	if r != nil {
		authKey = r.authKey
	}
	capture = append(capture, '{')
	for k, v := range h.All() {
		lk := lowerKey(&lb, k)
		class := classOf(lk)
		if len(authKey) > 0 && bytes.EqualFold(k, authKey) {
			class |= secret
		}
		capture = appendHeaderJSON(capture, lk, v, class)
	}
	return append(capture, '}')
}

// CaptureResponseHeaders appends the response headers h, redacted, as the
// JSON object a row stores: the relay's own answer to a refused request.
func CaptureResponseHeaders(capture []byte, h *fasthttp.ResponseHeader) []byte {
	var lb [64]byte
	capture = append(capture, '{')
	for k, v := range h.All() {
		lk := lowerKey(&lb, k)
		capture = appendHeaderJSON(capture, lk, v, classOf(lk))
	}
	return append(capture, '}')
}

// appendHeaderJSON appends one "name":"value" member to a JSON object
// being built in capture (after '{' or a previous member), redacting secrets
// (class is classOf(lowerName)).
func appendHeaderJSON(capture, lowerName, value []byte, class headerClass) []byte {
	if capture[len(capture)-1] != '{' {
		capture = append(capture, ',')
	}
	capture = appendJSONString(capture, lowerName)
	capture = append(capture, ':')
	if class&secret != 0 {
		return append(capture, `"[redacted]"`...)
	}
	return appendJSONString(capture, value)
}

// copyResponseHeaders copies the upstream's end-to-end headers to the
// client's response and appends them, redacted, as JSON to capture.
func copyResponseHeaders(dst *fasthttp.ResponseHeader, src *fasthttp.ResponseHeader, capture []byte) []byte {
	var lb [64]byte
	connHdr := connectionNames(src.Peek("Connection"))
	dst.DisableNormalizing() // canonical from the parse already, as above
	capture = append(capture, '{')
	for k, v := range src.All() {
		lk := lowerKey(&lb, k)
		class := classOf(lk)
		capture = appendHeaderJSON(capture, lk, v, class)
		if class&hopByHop != 0 || string(lk) == "date" || !validName(k) {
			continue
		}
		if len(connHdr) > 0 && listedInConnection(connHdr, k) {
			continue
		}
		switch string(lk) {
		case "content-type":
			dst.SetContentTypeBytes(v)
		case "server":
			dst.SetServerBytes(v)
		case "x-request-id":
			dst.AddBytesKV(upstreamRequestIDKey, v)
		case "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset":
			// The relay's own limits carry these names (set before the
			// upstream answered): the provider's go under their own.
			if len(dst.PeekBytes(k)) > 0 {
				dst.AddBytesKV(upstreamRateLimitKey(lk), v)
				continue
			}
			dst.AddBytesKV(k, v)
		default:
			dst.AddBytesKV(k, v)
		}
	}
	return append(capture, '}')
}

var (
	upstreamRateLimitLimit     = []byte("X-Upstream-RateLimit-Limit")
	upstreamRateLimitRemaining = []byte("X-Upstream-RateLimit-Remaining")
	upstreamRateLimitReset     = []byte("X-Upstream-RateLimit-Reset")
)

// upstreamRateLimitKey is the name under which an upstream's X-RateLimit-*
// field (lower-case lk) reaches a client whose answer has the relay's own.
func upstreamRateLimitKey(lk []byte) []byte {
	switch string(lk) {
	case "x-ratelimit-limit":
		return upstreamRateLimitLimit
	case "x-ratelimit-remaining":
		return upstreamRateLimitRemaining
	}
	return upstreamRateLimitReset
}

const hexDigits = "0123456789abcdef"

// jsonPlain marks the bytes appendJSONString copies as they are: printable
// ASCII but '"' and '\\'. Bytes from 0x80 are copied when they form valid
// UTF-8.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string literal, valid UTF-8 whatever
// s holds: control characters are escaped, and so is each byte that is not
// part of valid UTF-8, as the character of its value (\u00XX): header
// values outside ASCII that are not UTF-8 are ISO-8859-1 (RFC 9110 5.5), and
// no JSON reader (ClickHouse's, Python's) refuses the column.
func appendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if jsonPlain[c] {
			continue
		}
		if c >= utf8.RuneSelf {
			if r, size := utf8.DecodeRune(s[i:]); r != utf8.RuneError || size > 1 {
				i += size - 1
				continue
			}
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"':
			dst = append(dst, '\\', '"')
		case '\\':
			dst = append(dst, '\\', '\\')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// AppendJSONString is appendJSONString for other packages (error bodies).
func AppendJSONString(dst []byte, s string) []byte {
	return appendJSONString(dst, []byte(s))
}
