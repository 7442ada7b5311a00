package upstream

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"slices"
	"unicode/utf8"

	"github.com/stream-relay/stream-relay/record"
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
	// header. The client's Accept-Encoding is dropped and the relay asks
	// for identity instead (copyRequestHeaders), so the upstream answers in
	// plain bytes, which the relay can scan for the first token and store
	// for analysis.
	clientOnly
	// secret: redacted in captured header JSON.
	secret
	// subprotocolList: a subprotocol list (Sec-WebSocket-Protocol),
	// captured entry by entry: the known names that carry nothing secret
	// kept, every other entry redacted (appendSubprotocolsRedacted).
	subprotocolList
)

// classOf returns the class of the lower-case field name lk (0 for a field
// copied and captured as it is). A switch rather than maps: the compiler
// dispatches on the length first, and a request's dozen fields cost no
// hashing.
func classOf(lk []byte) headerClass {
	switch string(lk) {
	// Expect too: the relay answered the client's 100-continue itself and
	// sends the body whole; an upstream that answered its Expect with a
	// final status without reading the body (417) read that body as the
	// connection's next request, whose answer went to the next client.
	// HTTP2-Settings goes with the Upgrade to h2c it belongs to (RFC 7540
	// 3.2.1: a connection-specific field).
	case "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
		"te", "trailer", "transfer-encoding", "upgrade", "content-length", "host", "expect", "http2-settings":
		return hopByHop
	case "proxy-authorization":
		return hopByHop | secret
	case "authorization", "x-api-key", "api-key", "x-goog-api-key", "cookie":
		return clientOnly | secret
	case "x-tenant-id", "accept-encoding":
		return clientOnly
	// Set-Cookie's values cannot be joined with commas: redacted, a
	// repeat's reads "[redacted], [redacted]" (headerSet), unambiguous.
	case "set-cookie":
		return secret
	// Browsers cannot set headers on a WebSocket handshake, so providers
	// take credentials as subprotocols ("openai-insecure-api-key.<key>",
	// Deepgram's "token, <key>", Kubernetes' "base64url.bearer..."): only
	// the names known to be no secret are kept.
	case "sec-websocket-protocol":
		return subprotocolList
	}
	return 0
}

// FramingHeader reports whether name is a field the relay sets or drops
// itself on the way upstream (hop-by-hop, Host, Content-Length, Expect
// ...): a route's provider key cannot go in it.
func FramingHeader(name string) bool {
	var lb [64]byte
	if len(name) > len(lb) {
		return false
	}
	c := fieldClass(lowerKey(&lb, []byte(name)))
	// Proxy-Authorization is hop-by-hop for a client's request, but a
	// route's key goes in it (an authenticating proxy, Cloud IAP in front
	// of a self-hosted model) as set last on the upstream request.
	return c&hopByHop != 0 && c&secret == 0
}

// fieldClass is classOf for a client's request field: a name that spells
// '-' as '_' or a space ("X_Api_Key", "X Api Key") takes the class of the
// name it stands for. A CGI-style server behind the upstream, or nginx with
// underscores_in_headers on, reads it as that name: it may carry the relay
// key (never forwarded, redacted in the row) or frame the body
// (Transfer_Encoding, never forwarded).
func fieldClass(lk []byte) headerClass {
	c := classOf(lk)
	if c != 0 || len(lk) > 64 || bytes.IndexAny(lk, "_ \t") < 0 {
		return c
	}
	var b [64]byte
	for i, ch := range lk {
		b[i] = dashed(ch)
	}
	return classOf(b[:len(lk)])
}

// dashed returns c with '_', ' ' and tab read as '-' and ASCII lower-cased.
func dashed(c byte) byte {
	switch {
	case c == '_' || c == ' ' || c == '\t':
		return '-'
	case c >= 'A' && c <= 'Z':
		return c + 'a' - 'A'
	}
	return c
}

// sameField reports whether a and b name one field, as fieldClass reads
// names: case aside, and '_' or a space for '-'.
func sameField(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if dashed(a[i]) != dashed(b[i]) {
			return false
		}
	}
	return true
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

// connectionLines returns the Connection field's value: its lines joined
// with commas into buf when there are several, as one list (RFC 9110
// 7.6.1; a field named on a second line went upstream).
func connectionLines(vals [][]byte, buf []byte) []byte {
	switch len(vals) {
	case 0:
		return nil
	case 1:
		return vals[0]
	}
	for i, v := range vals {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, v...)
	}
	return buf
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
	var seen headerSet
	var cb [256]byte
	var sent uint64 // r.extra's fields the client's own values went out under (bit i: r.extra[i])
	connHdr := connectionNames(connectionLines(src.PeekAll("Connection"), cb[:0]))
	// The names come canonical from fasthttp's parse of the client's
	// request: adding them to dst need not canonicalize them again.
	dst.DisableNormalizing()
	capture = append(capture, '{')
	for k, v := range src.All() {
		lk := lowerKey(&lb, k)
		class := fieldClass(lk)
		spelled := class != classOf(lk) // a special field's name spelled with '_' or spaces
		if sameField(k, r.authKey) {
			spelled = spelled || !bytes.EqualFold(k, r.authKey)
			class |= clientOnly | secret // the route's key header: the provider key's place
		}
		capture = addField(&seen, capture, lk, v, class, src)
		if class&(hopByHop|clientOnly) != 0 || spelled || !validName(k) {
			// A spelled one is never forwarded either: the upstream's
			// server may read it as the field (Sec_WebSocket_Protocol
			// with a key entry, which the dialer strips only from the
			// field itself).
			continue
		}
		if class&subprotocolList != 0 && r.Kind != record.KindWS {
			// Means nothing outside a WebSocket handshake, and may carry
			// the relay key (handlers take it there, as a browser's
			// WebSocket must send it): never forwarded on an HTTP route.
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
		for i, h := range r.extra {
			if i < 64 && bytes.EqualFold(k, h[0]) {
				sent |= 1 << i
			}
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
	capture = seen.close(capture)
	for i, h := range r.extra {
		// Unless the client's own value was forwarded, empty or repeated
		// as it was (the route's replaced an empty one, and the first of
		// two; fasthttp keeps no empty User-Agent or Content-Type, so
		// the route's goes there): one the relay does not forward (Authorization, which
		// carried the relay key; an underscore name; one listed in
		// Connection) leaves the route's.
		if i < 64 && sent&(1<<i) == 0 || i >= 64 && len(dst.PeekBytes(h[0])) == 0 {
			dst.SetBytesKV(h[0], h[1])
		}
	}
	for _, h := range r.forced {
		dst.DelBytes(h[0]) // every value the client sent under the name
		dst.SetBytesKV(h[0], h[1])
	}
	if r.Kind != record.KindWS && len(dst.PeekBytes(acceptEncodingKey)) == 0 {
		// A request without Accept-Encoding accepts any coding (RFC 9110
		// 12.5.3): an upstream may gzip, and the client (which may have
		// refused gzip) and the row would get compressed bytes.
		dst.SetBytesKV(acceptEncodingKey, identityCoding)
	}
	if r.authValue != nil {
		dst.SetBytesKV(r.authKey, r.authValue)
	}
	return capture
}

var (
	acceptEncodingKey = []byte("Accept-Encoding")
	identityCoding    = []byte("identity")
)

// CaptureRequestHeaders appends the request headers h, redacted, as the
// JSON object a row stores, for a request refused before an upstream
// request was built (copyRequestHeaders captures the others). r is the
// request's route (its key header is redacted too), nil for none.
func (r *Route) CaptureRequestHeaders(capture []byte, h *fasthttp.RequestHeader) []byte {
	var lb [64]byte
	var seen headerSet
	var authKey []byte
	if r != nil {
		authKey = r.authKey
	}
	raw := h.RawHeaders()
	folds := bytes.Contains(raw, []byte("\n ")) || bytes.Contains(raw, []byte("\n\t"))
	capture = append(capture, '{')
	for k, v := range h.All() {
		lk := lowerKey(&lb, k)
		if framingField(lk) {
			continue // as sent: below
		}
		class := fieldClass(lk)
		if len(authKey) > 0 && sameField(k, authKey) {
			class |= secret
		}
		if folds && foldedField(raw, k) {
			// fasthttp joined the continuation lines (obs-fold, refused)
			// onto this field's value: a line there may be a credential's
			// ("X-Foo: 1\r\n Authorization: Bearer ...") that was stored
			// as X-Foo's value.
			class |= secret
		}
		capture = addField(&seen, capture, lk, v, class, h)
	}
	return seen.close(appendFramingFields(&seen, capture, raw))
}

// framingField reports whether lk (a lower-case name) is a field of the
// message's framing that fasthttp rewrites as it reads a request: a
// Content-Length set to the body it read (0 for none), a
// Transfer-Encoding dropped once the chunks are read, a Connection: close
// added to an HTTP/1.0 request or one it will close. A refused request's
// row (a smuggling attempt's: both framings) keeps them as sent.
func framingField(lk []byte) bool {
	switch string(lk) {
	case "content-length", "transfer-encoding", "connection":
		return true
	}
	return false
}

// appendFramingFields captures the framing fields of the raw header block
// raw (framingField) as they were sent, one a line.
func appendFramingFields(seen *headerSet, capture, raw []byte) []byte {
	var lb [64]byte
	for len(raw) > 0 {
		var line []byte
		line, raw = cutLine(raw)
		k, v, ok := bytes.Cut(bytes.TrimRight(line, "\r"), []byte{':'})
		if !ok || len(k) > len(lb) {
			continue
		}
		if lk := lowerKey(&lb, k); framingField(lk) {
			capture = seen.add(capture, lk, bytes.TrimSpace(v), classOf(lk))
		}
	}
	return capture
}

// addField captures one field of h (lk its lower-case name, class its
// classOf), redacted as class says. A redacted Cookie, which fasthttp hands
// over as one field joined from all its lines, is captured once a line:
// the row keeps the count, as for every other repeated secret field.
func addField(seen *headerSet, capture, lk, v []byte, class headerClass, h *fasthttp.RequestHeader) []byte {
	if class&secret == 0 || string(lk) != "cookie" {
		return seen.add(capture, lk, v, class)
	}
	for range max(fieldLines(h.RawHeaders(), lk), 1) {
		capture = seen.add(capture, lk, v, class)
	}
	return capture
}

// fieldLines counts the lines of the raw header block raw that are fields
// named lowerName (any case).
func fieldLines(raw, lowerName []byte) int {
	n := 0
	for len(raw) > 0 {
		var line []byte
		line, raw = cutLine(raw)
		if len(line) > len(lowerName) && line[len(lowerName)] == ':' && bytes.EqualFold(line[:len(lowerName)], lowerName) {
			n++
		}
	}
	return n
}

// cutLine returns the first line of b, without its LF, and what follows.
func cutLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// foldedField reports whether a field named name in the raw header block
// raw is followed by a continuation line (one beginning with a space or a
// tab).
func foldedField(raw, name []byte) bool {
	for len(raw) > 0 {
		line, next := cutLine(raw)
		raw = next
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' || len(next) == 0 || (next[0] != ' ' && next[0] != '\t') {
			continue
		}
		if n, _, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimRight(n, " \t"), name) {
			return true
		}
	}
	return false
}

// CaptureResponseHeaders appends the response headers h, redacted, as the
// JSON object a row stores: the relay's own answer to a refused request.
func CaptureResponseHeaders(capture []byte, h *fasthttp.ResponseHeader) []byte {
	var lb [64]byte
	var seen headerSet
	capture = append(capture, '{')
	for k, v := range h.All() {
		lk := lowerKey(&lb, k)
		capture = seen.add(capture, lk, v, classOf(lk))
	}
	return seen.close(capture)
}

// appendHeaderJSON appends one "name":"value" member to a JSON object
// being built in capture (after '{' or a previous member), redacting secrets
// (class is classOf(lowerName)). It is for names the object cannot hold
// already (the relay's own ":ws-close-code" and the like); header fields
// go through headerSet.add.
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

// redacted is what a captured secret's value reads.
const redacted = "[redacted]"

// headerNamesOnStack is how many distinct field names the capture of one
// message tracks without allocating: requests and responses have a dozen
// or two.
const headerNamesOnStack = 32

// headerSet builds the JSON object of a message's captured headers in a
// buffer: after its '{', add appends each field, close ends it. A zero
// headerSet is ready; it lives on its caller's stack, so that a message
// with no more than headerNamesOnStack distinct names costs no
// allocation, and one without repeats nothing copied twice.
//
// Each name is one member, as a JSON reader needs: a repeated field's
// value (names are compared as lower case) is joined to the first's, after
// ", " and in arrival order, as RFC 9110 5.3 combines them. Set-Cookie,
// which cannot be combined so, is a secret: its member reads "[redacted],
// [redacted]", one for each field, and loses nothing the row would keep.
type headerSet struct {
	// bits has bit hash>>58 set for each name's hash: a name whose bit is
	// clear is new without a look at the names.
	bits  uint64
	n     int // members so far
	first [headerNamesOnStack]headerName
	more  *headerRepeats // nil until a name repeats or names outgrow first
}

// headerName is where one member of a captured-headers object lies in the
// buffer that builds it: its escaped name at [at, at+n), its value's
// closing quote at end; hash is nameHash's of the name.
type headerName struct {
	hash       uint64
	at, n, end int
}

// headerRepeats is what a header object whose names repeat, or are many,
// needs besides.
type headerRepeats struct {
	names []headerName // the members past headerSet.first
	// joins are the values of repeated fields, escaped, in arrival order,
	// each in the buffer after the members of its time (bytes that close
	// leaves out of the object it builds again).
	joins []headerJoin
	few   [4]headerJoin // joins' first array: one allocation for a few repeats
	// index finds a name's place by its indexHash once there are more than
	// headerNamesOnStack: a client's thousand short fields cost a thousand
	// lookups, not a million comparisons. A name whose hash is another's
	// (the first keeps the key) is looked for through all.
	index map[uint64]int
}

// headerJoin is a repeated field's value: escaped at [from, to) in the
// buffer, to be joined to member's.
type headerJoin struct{ member, from, to int }

// indexSeed keys indexHash, which a client cannot make collide then.
var indexSeed = maphash.MakeSeed()

// indexHash is a name's key in headerRepeats.index.
func indexHash(name []byte) uint64 { return maphash.Bytes(indexSeed, name) }

// nameHash mixes the length and the first and last 8 bytes of name (all of
// it up to 16 bytes long), for headerSet to compare the bytes of two names
// only when their hashes are equal: two loads and two multiplications
// whatever the name's length.
func nameHash(name []byte) uint64 {
	const k = 0x9e3779b97f4a7c15
	var head, tail uint64
	if len(name) < 8 {
		for i, c := range name {
			head |= uint64(c) << (8 * i)
		}
	} else {
		head = binary.LittleEndian.Uint64(name)
		tail = binary.LittleEndian.Uint64(name[len(name)-8:])
	}
	return ((head^uint64(len(name)))*k ^ tail) * k
}

// member returns the i-th member.
func (s *headerSet) member(i int) *headerName {
	if i < len(s.first) {
		return &s.first[i]
	}
	return &s.more.names[i-len(s.first)]
}

// repeats returns s.more, made if need be.
func (s *headerSet) repeats() *headerRepeats {
	if s.more == nil {
		m := new(headerRepeats)
		m.joins = m.few[:0]
		s.more = m
	}
	return s.more
}

// add appends the field lowerName: value to the object in capture. class
// is classOf(lowerName): a secret's value reads "[redacted]".
func (s *headerSet) add(capture, lowerName, value []byte, class headerClass) []byte {
	start := len(capture)
	if s.n > 0 {
		capture = append(capture, ',')
	}
	capture = append(capture, '"')
	at := len(capture)
	capture = appendJSONChars(capture, lowerName)
	name := capture[at:]
	hash := nameHash(name)
	bit := uint64(1) << (hash >> 58)
	i := -1
	if s.bits&bit != 0 || s.more != nil { // else a new name, known without a call
		i = s.find(capture, name, hash)
	}
	if i >= 0 {
		// Kept after the members until close joins it.
		capture = capture[:start]
		capture = appendCapturedValue(capture, value, class)
		m := s.repeats()
		m.joins = append(m.joins, headerJoin{i, start, len(capture)})
		return capture
	}
	s.bits |= bit
	capture = append(capture, '"', ':', '"')
	capture = appendCapturedValue(capture, value, class)
	p := headerName{hash: hash, at: at, n: len(name), end: len(capture)}
	if s.n < len(s.first) {
		s.first[s.n] = p
	} else {
		m := s.repeats()
		m.names = append(m.names, p)
	}
	s.n++
	if s.n > len(s.first) {
		s.index(capture)
	}
	return append(capture, '"')
}

// appendCapturedValue appends the inside of the JSON string a field's
// value is captured as (class is classOf of its name): "[redacted]" for a
// secret, a subprotocol list redacted entry by entry (subprotocolList),
// else the value escaped.
func appendCapturedValue(capture, value []byte, class headerClass) []byte {
	switch {
	case class&secret != 0:
		return append(capture, redacted...)
	case class&subprotocolList != 0:
		return appendSubprotocolsRedacted(capture, value)
	}
	return appendJSONChars(capture, value)
}

// appendSubprotocolsRedacted appends the comma-separated subprotocol list
// protocols escaped as appendJSONChars does, its entries trimmed (empty
// ones left out) and joined by ", ". An entry is kept only when it is a
// name known to carry nothing secret (publicSubprotocol); an entry that
// carries a key (IsKeySubprotocol) keeps its KeySubprotocol prefix, as
// sent, before "[redacted]"; any other entry, which may be a credential
// of a scheme the relay does not know (Deepgram's "token, <key>"), reads
// "[redacted]", one for each, so the count stays visible:
// "realtime, openai-insecure-api-key.[redacted]", "token, [redacted]".
func appendSubprotocolsRedacted(capture, protocols []byte) []byte {
	start := len(capture)
	for rest := protocols; len(rest) > 0; {
		var p []byte
		p, rest = nextToken(rest)
		if len(p) == 0 {
			continue
		}
		if len(capture) > start {
			capture = append(capture, ", "...)
		}
		switch {
		case publicSubprotocol(p):
			capture = appendJSONChars(capture, p)
		case IsKeySubprotocol(p):
			capture = appendJSONChars(capture, p[:len(keySubprotocol)])
			capture = append(capture, redacted...)
		default:
			capture = append(capture, redacted...)
		}
	}
	return capture
}

// openAIBeta begins the subprotocol entries OpenAI's Realtime clients
// name a beta with ("openai-beta.realtime-v1").
var openAIBeta = []byte("openai-beta.")

// publicSubprotocol reports whether the trimmed subprotocol entry p is a
// name known to carry nothing secret, compared exactly: "realtime",
// "token" (the bare word that names Deepgram's scheme, not the key after
// it) or an "openai-beta." entry.
func publicSubprotocol(p []byte) bool {
	return string(p) == "realtime" || string(p) == "token" || bytes.HasPrefix(p, openAIBeta)
}

// find returns the place of the member named name (escaped, in capture;
// hash is its nameHash), or -1 for a new name.
func (s *headerSet) find(capture, name []byte, hash uint64) int {
	if s.more != nil && s.more.index != nil {
		i, ok := s.more.index[indexHash(name)]
		if !ok {
			return -1
		}
		if p := s.member(i); bytes.Equal(capture[p.at:p.at+p.n], name) {
			return i
		}
		// Another name's hash: looked for through them all.
	} else if s.bits&(1<<(hash>>58)) == 0 {
		return -1
	}
	for i := range s.n {
		if p := s.member(i); p.hash == hash && bytes.Equal(capture[p.at:p.at+p.n], name) {
			return i
		}
	}
	return -1
}

// index adds the last member to the index, made with all of them when it
// is the first past headerNamesOnStack.
func (s *headerSet) index(capture []byte) {
	m := s.repeats()
	from := s.n - 1
	if m.index == nil {
		m.index = make(map[uint64]int, 2*s.n)
		from = 0
	}
	for i := from; i < s.n; i++ {
		p := s.member(i)
		h := indexHash(capture[p.at : p.at+p.n])
		if _, taken := m.index[h]; !taken {
			m.index[h] = i
		}
	}
}

// close ends the object in capture. The values of repeated fields, kept
// after the members of their time, are joined to their first field's
// member: the object is built again after itself, in one pass, and moved
// into place.
func (s *headerSet) close(capture []byte) []byte {
	if s.more == nil || len(s.more.joins) == 0 {
		return append(capture, '}')
	}
	joins := s.more.joins
	slices.SortStableFunc(joins, func(a, b headerJoin) int { return a.member - b.member })
	start := s.first[0].at - 2 // {"
	built := len(capture)
	capture = append(capture, '{')
	for i := range s.n {
		if i > 0 {
			capture = append(capture, ',')
		}
		p := s.member(i)
		capture = append(capture, capture[p.at-1:p.end]...) // "name":"value
		for ; len(joins) > 0 && joins[0].member == i; joins = joins[1:] {
			capture = append(capture, ',', ' ')
			capture = append(capture, capture[joins[0].from:joins[0].to]...)
		}
		capture = append(capture, '"')
	}
	capture = append(capture, '}')
	n := copy(capture[start:], capture[built:])
	return capture[:start+n]
}

// copyResponseHeaders copies the upstream's end-to-end headers to the
// client's response and appends them, redacted, as JSON to capture.
func copyResponseHeaders(dst *fasthttp.ResponseHeader, src *fasthttp.ResponseHeader, capture []byte) []byte {
	var lb [64]byte
	var seen headerSet
	var cb [256]byte
	connHdr := connectionNames(connectionLines(src.PeekAll("Connection"), cb[:0]))
	dst.DisableNormalizing() // canonical from the parse already, as above
	capture = append(capture, '{')
	for k, v := range src.All() {
		lk := lowerKey(&lb, k)
		class := classOf(lk)
		capture = seen.add(capture, lk, v, class)
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
	return seen.close(capture)
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
	dst = appendJSONChars(dst, s)
	return append(dst, '"')
}

// appendJSONChars appends s escaped as appendJSONString does, without the
// quotes: the inside of a JSON string.
func appendJSONChars(dst, s []byte) []byte {
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
	return append(dst, s[start:]...)
}

// AppendJSONString is appendJSONString for other packages (error bodies).
func AppendJSONString(dst []byte, s string) []byte {
	return appendJSONString(dst, []byte(s))
}
