package upstream

import (
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// redactedKey replaces the provider key where an upstream's answer repeats
// it.
var redactedKey = []byte("[redacted]")

// minMaskedKey is the shortest provider key masked: a local server's
// placeholder ("EMPTY", "ollama", "none") is no secret, and masking it
// would garble the answer's words.
const minMaskedKey = 8

// minMaskedPrefix is the shortest end of an answer cut inside the key
// (WebSocket refusals are kept to 1 KiB) that is masked as the key's
// beginning.
const minMaskedPrefix = 4

// maskKey returns b with every occurrence of the route's secret (its
// provider key, or without one a credential its headers send), as it is
// as it goes in a query (auth_query) and with '/' written "\/" as JSON
// may, replaced by "[redacted]".
// An answer without the key comes back as it was.
func (r *Route) maskKey(b []byte) []byte {
	key := r.secret
	if len(key) < minMaskedKey {
		return b
	}
	b = replaceAll(b, key)
	if q := url.QueryEscape(key); q != key {
		b = replaceAll(b, q)
	}
	if r.keyJSON != "" {
		b = replaceAll(b, r.keyJSON)
	}
	return b
}

// maskKeyCut is maskKey for an answer cut short: an end of b that begins
// the key is masked too.
func (r *Route) maskKeyCut(b []byte) []byte {
	if len(r.secret) < minMaskedKey {
		return b
	}
	return maskCutKey(r.maskKey(b), r.secret)
}

// replaceAll replaces every occurrence of key in b by redactedKey.
func replaceAll(b []byte, key string) []byte {
	if !bytes.Contains(b, []byte(key)) {
		return b
	}
	return bytes.ReplaceAll(b, []byte(key), redactedKey)
}

// maskCutKey masks an end of b that is the beginning of key (at least
// minMaskedPrefix bytes of it).
func maskCutKey(b []byte, key string) []byte {
	for n := min(len(key)-1, len(b)); n >= minMaskedPrefix; n-- {
		if string(b[len(b)-n:]) == key[:n] {
			return append(b[:len(b)-n], redactedKey...)
		}
	}
	return b
}

// maskKeyInHeader masks the provider key in every value of h (maskKey).
func (r *Route) maskKeyInHeader(h http.Header) {
	if len(r.secret) < minMaskedKey {
		return
	}
	for _, vs := range h {
		for i, v := range vs {
			if m := r.maskKey([]byte(v)); string(m) != v {
				vs[i] = string(m)
			}
		}
	}
}

// maskKeyInResponse masks the provider key (maskKey) in the header values
// of an upstream's answer on an HTTP route, before they reach the client
// and the row: an upstream that repeats the request (a redirect's Location
// quoting the URL with auth_query's key, a debugging header echoing
// Authorization) sent the key on. The header is only read unless a value
// holds the key; then every value of that header name is set again, in
// order. (The body of an answer of status 300 and up is masked as it
// streams: bodyMask.)
func (r *Route) maskKeyInResponse(h *fasthttp.ResponseHeader) {
	if r == nil || len(r.secret) < minMaskedKey {
		return
	}
	var names []string
	h.VisitAll(func(k, v []byte) {
		if r.holdsKey(v) && !containsFold(names, k) {
			names = append(names, string(k))
		}
	})
	for _, name := range names {
		var vals [][]byte
		h.VisitAll(func(k, v []byte) {
			if strings.EqualFold(unsafe.String(unsafe.SliceData(k), len(k)), name) {
				vals = append(vals, r.maskKey(append([]byte(nil), v...)))
			}
		})
		h.Del(name)
		for _, v := range vals {
			h.AddBytesV(name, v)
		}
	}
}

// holdsKey reports whether v holds the provider key as it is or as it goes
// in a query.
func (r *Route) holdsKey(v []byte) bool {
	s := unsafe.String(unsafe.SliceData(v), len(v))
	return strings.Contains(s, r.secret) || r.keyQuery != "" && strings.Contains(s, r.keyQuery) ||
		r.keyJSON != "" && strings.Contains(s, r.keyJSON)
}

func containsFold(names []string, k []byte) bool {
	for _, n := range names {
		if strings.EqualFold(n, string(k)) {
			return true
		}
	}
	return false
}

// bodyMask masks the provider key in the body of an answer that is no
// success (status 300 and up: an error page or a redirect quoting the
// request) as it goes to the client and the row, in place and at the same
// length, so that a Content-Length or a chunk's size stays true: a whole
// key becomes "[redacted]" padded with '*' to its length, a piece of one
// '*'s. Success bodies pass untouched and unscanned. A key split between
// two reads is masked on both sides: a read that ends in the key's first
// minMaskedPrefix bytes or more has that end masked at once (it is on its
// way out before the next read comes; fewer are left as they are) and the
// next read's beginning is masked when it goes on with the key. An
// ordinary text that ends a read in the key's first 4 bytes or more loses
// them to '*'s. (A key whose beginning repeats inside itself may be cut
// where only the shorter repeat is its start; provider keys' random parts
// make that as rare as a chance match.)
type bodyMask struct {
	on    bool
	forms [3]string // the key, as it goes in a query and with '/' as "\/" when those differ
	// carry is, per form, how many of its first bytes ended the last read.
	carry [3]int
}

// start arms m for an answer of status from route r.
func (m *bodyMask) start(r *Route, status int) {
	*m = bodyMask{}
	if r == nil || status < 300 || len(r.secret) < minMaskedKey {
		return
	}
	m.on, m.forms[0], m.forms[1], m.forms[2] = true, r.secret, r.keyQuery, r.keyJSON
}

// apply masks b, the next read of the body, in place. What it finds is
// found on the bytes as they came, for both forms, before any is masked:
// the forms share their beginning, and one form's '*'s hid the other's.
func (m *bodyMask) apply(b []byte) {
	var cont, tail [3]int // per form: b's first bytes that go on with a cut key; b's last that begin one
	for i, key := range m.forms {
		if key == "" {
			continue
		}
		if c := m.carry[i]; c > 0 {
			rest := key[c:]
			if n := min(len(rest), len(b)); string(b[:n]) == rest[:n] {
				cont[i] = n
			}
		}
		for n := min(len(key)-1, len(b)); n >= 1; n-- {
			if string(b[len(b)-n:]) == key[:n] {
				tail[i] = n
				break
			}
		}
	}
	for _, key := range m.forms {
		if key == "" {
			continue
		}
		for j := 0; ; {
			k := bytes.Index(b[j:], []byte(key))
			if k < 0 {
				break
			}
			j += k
			redact(b[j : j+len(key)])
			j += len(key)
		}
	}
	for i, key := range m.forms {
		if key == "" {
			continue
		}
		c := m.carry[i]
		stars(b[:cont[i]])
		switch {
		case cont[i] > 0 && cont[i] == len(b) && c+cont[i] < len(key):
			m.carry[i] = c + cont[i] // b is all key, and more is to come
		default:
			// A key's first bytes at the end: carried whatever their
			// number, so that its rest is masked in the next read;
			// masked here from minMaskedPrefix bytes on (fewer, "sk-",
			// say nothing and are too common an ending).
			m.carry[i] = tail[i]
			if tail[i] >= minMaskedPrefix {
				stars(b[len(b)-tail[i]:])
			}
		}
	}
}

// redact overwrites a whole key in place: "[redacted]" and '*'s to its
// length ('*'s alone when it is shorter).
func redact(b []byte) {
	if len(b) < len(redactedKey) {
		stars(b)
		return
	}
	stars(b[copy(b, redactedKey):])
}

func stars(b []byte) {
	for i := range b {
		b[i] = '*'
	}
}
