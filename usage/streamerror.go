package usage

import "bytes"

// An error the provider sends inside a 200 response, after the status
// line went out, is seen by its event structure, never by the word alone
// (a model that writes "error" is no error):
//
//   - an SSE line "event: error" (Anthropic; OpenAI Responses);
//   - an SSE data line whose JSON object starts with the key "error"
//     (`data: {"error":{...}}`: OpenAI chat and compatible servers, vLLM,
//     Gemini with alt=sse) or with "type":"error" (`data:
//     {"type":"error",...}`: Anthropic, OpenAI Responses);
//   - in a response that is JSON rather than SSE (a Gemini stream without
//     alt=sse is one JSON array, an element at a time; Ollama's native API
//     streams one JSON object a line), an object that starts with the key
//     "error" at the start of the body, right after its opening '[', after
//     a ',' that starts a line (Gemini writes its array's elements one per
//     line), or whose '{' starts a line (a nested object is indented).
//
// Inside a JSON string a quote is always escaped and a line break is
// "\n", two characters: the text of a content delta cannot look like any
// of these. The same rules apply to every API: each API's errors take one
// of these forms, and none of them is normal content in another.

// errOverlap bounds the bytes kept across reads so that a marker split
// between two reads is still found: the head of an SSE line (up to the end
// of its marker), or the last bytes of a JSON body. A marker with more
// white space than fits is not found.
const errOverlap = 64

// The SSE markers, each at the start of a line (sseLineError):
//
//	event: error                       event: response.failed
//	data: {"error":                    data: {"type":"error"   data: {"type":"response.failed"
//
// with any spaces or tabs where JSON allows white space and after the
// colon of the field, and a CR or LF right after an event's name.
var (
	eventNames = [...]string{"error", "response.failed"}
	typeValues = [...]string{`"error"`, `"response.failed"`}
)

// bodyAnchor is what a JSON body's marker holds: the key "error" without
// its first two bytes (a search for a word that starts with a letter as
// common as 'e' is several times slower).
var bodyAnchor = []byte(`rror"`)

// StreamErrorScanner finds an error event in a response, read by read as
// the bytes arrive, without allocating: the relay runs it on every relayed
// read of an sse route's response, `relay reparse` (HasStreamError) on the
// stored chunks. In an SSE stream it looks at the start of each line only
// (one search for line feeds per read); a JSON body is searched whole.
// The zero value is not ready: call Start.
type StreamErrorScanner struct {
	off   bool // a raw route or an error status: nothing to find
	found bool
	shape shape
	// SSE: the head of the line the last read ended in, while it may still
	// be a marker (open); open with no bytes at a line's start.
	line    [errOverlap]byte
	lineLen int
	open    bool
	// JSON body: the last bytes seen (at most errOverlap); at the start one
	// NUL, which stands for the start of the response.
	tail seam
}

// Start readies s for a new response: a raw (binary) response or an error
// status (400 and up, whose whole body is an error already typed
// upstream_status) is not scanned.
func (s *StreamErrorScanner) Start(raw bool, status int) {
	*s = StreamErrorScanner{off: raw || status >= 400, open: true, tail: seam{n: 1}}
}

// Found reports whether an error event was seen.
func (s *StreamErrorScanner) Found() bool { return s.found }

// Scan reports whether b, the next bytes of the response, completes an
// error event. After it did once, Scan reports false and costs nothing.
func (s *StreamErrorScanner) Scan(b []byte) bool {
	if s.found || s.off || len(b) == 0 {
		return false
	}
	if s.shape == shapeUnknown {
		s.shape = shapeOf(b)
	}
	var hit bool
	switch s.shape {
	case shapeStream:
		hit = s.scanLines(b)
	case shapeBody:
		hit = s.scanBody(b)
	default: // white space so far: keep both states
		hit = s.scanLines(b) || s.scanBody(b)
	}
	s.found = hit
	return hit
}

// scanLines looks for an SSE marker at the start of each line of b, and of
// the line the last read ended in.
func (s *StreamErrorScanner) scanLines(b []byte) bool {
	if s.open && s.lineLen == 0 && plainData(b) {
		s.open = false // the common case: the read starts with a data line
	}
	if s.open {
		head := b
		if s.lineLen > 0 {
			head = s.line[:s.lineLen+copy(s.line[s.lineLen:], b)]
		}
		match, open := sseLineError(head)
		if match {
			return true
		}
		s.open = false
		// Not decided when head ended, and all of b went into it: the
		// line goes on in the next read.
		if open && s.lineLen+len(b) < errOverlap {
			if s.lineLen == 0 {
				copy(s.line[:], b)
			}
			s.open, s.lineLen = true, s.lineLen+len(b)
			return false
		}
		s.lineLen = 0
	}
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return false
		}
		i += j + 1
		for i < len(b) && (b[i] == '\n' || b[i] == '\r') {
			i++ // blank lines: the end of an event
		}
		if i == len(b) {
			// b ends a line: the next read starts one.
			s.open, s.lineLen = true, 0
			return false
		}
		if c := b[i]; c != 'e' && c != 'd' || plainData(b[i:]) {
			continue // most lines: neither event: nor data: of an error
		}
		match, open := sseLineError(b[i:])
		if match {
			return true
		}
		if open && len(b)-i < errOverlap {
			s.open, s.lineLen = true, copy(s.line[:], b[i:])
			return false
		}
	}
}

// plainData reports whether h starts with `data: {"` and a key that is
// neither "error" nor "type": a data line with no error marker, told
// without the full match.
func plainData(h []byte) bool {
	return len(h) > 8 && h[8] != 'e' && h[8] != 't' && h[7] == '"' && h[6] == '{' && h[5] == ' ' &&
		h[0] == 'd' && h[1] == 'a' && h[2] == 't' && h[3] == 'a' && h[4] == ':'
}

// sseLineError reports whether the line that starts h is an error marker
// (match), or whether h ends before that is decided (open). Most lines are
// told at their first bytes: it is on the path of every relayed read.
func sseLineError(h []byte) (match, open bool) {
	if len(h) == 0 {
		return false, true
	}
	switch h[0] {
	case 'e':
		i, st := lit(h, 0, "event:")
		if st != litOK {
			return false, st == litShort
		}
		i = skipBlank(h, i)
		for _, name := range &eventNames {
			j, st := lit(h, i, name)
			switch {
			case st == litShort || st == litOK && j == len(h):
				open = true
			case st == litOK && (h[j] == '\n' || h[j] == '\r'):
				return true, false
			}
		}
		return false, open
	case 'd':
		i, st := lit(h, 0, "data:")
		if st != litOK {
			return false, st == litShort
		}
		if i = skipBlank(h, i); i == len(h) {
			return false, true
		}
		if h[i] != '{' {
			return false, false
		}
		if i = skipBlank(h, i+1); i == len(h) {
			return false, true
		}
		if h[i] != '"' {
			return false, false
		}
		if i+1 == len(h) {
			return false, true
		}
		var key string
		switch h[i+1] {
		case 'e':
			key = `error"`
		case 't':
			key = `type"`
		default:
			return false, false // the first key is another: most data lines
		}
		if i, st = lit(h, i+1, key); st != litOK {
			return false, st == litShort
		}
		if i = skipBlank(h, i); i == len(h) {
			return false, true
		}
		if h[i] != ':' {
			return false, false
		}
		if key[0] == 'e' {
			return true, false
		}
		if i = skipBlank(h, i+1); i == len(h) {
			return false, true
		}
		for _, v := range &typeValues {
			_, st := lit(h, i, v)
			if st == litOK {
				return true, false
			}
			open = open || st == litShort
		}
		return false, open
	}
	return false, false
}

const (
	litOK    = iota
	litShort // h ended, as far as it goes it matches
	litNo
)

// lit matches s at h[i:]: the index past it and litOK, litShort when h
// ends first, litNo when it differs.
func lit(h []byte, i int, s string) (int, int) {
	for k := 0; k < len(s); k++ {
		if i+k == len(h) {
			return i + k, litShort
		}
		if h[i+k] != s[k] {
			return i, litNo
		}
	}
	return i + len(s), litOK
}

// skipBlank skips spaces and tabs (SSE's and JSON's white space on one
// line).
func skipBlank(h []byte, i int) int {
	for i < len(h) && (h[i] == ' ' || h[i] == '\t') {
		i++
	}
	return i
}

// scanBody looks for a JSON body's marker in b and in its seam with the
// bytes before.
func (s *StreamErrorScanner) scanBody(b []byte) bool {
	var buf [2 * seamKeep]byte
	j, covered := s.tail.join(&buf, b)
	if j != nil && hasBodyError(j) || covered < len(b) && hasBodyError(b) {
		return true
	}
	s.tail.keepLast(b, errOverlap)
	return false
}

// HasStreamError reports whether a stored response holds an error event;
// data and ends hold its reads as in record.Chunks (chunk i is
// data[ends[i-1]:ends[i]]): the chunks are scanned as the relay read
// them, so the answer is the live path's.
func HasStreamError(raw bool, status int, data []byte, ends []uint32) bool {
	var s StreamErrorScanner
	s.Start(raw, status)
	start := uint32(0)
	for _, end := range ends {
		if end < start || int(end) > len(data) {
			return false
		}
		if s.Scan(data[start:end]) {
			return true
		}
		start = end
	}
	return false
}

// hasBodyError reports whether b, part of a JSON body, holds a whole
// marker: the key "error" first in an object that is the body, the first
// element of the body's array, an element after a ',' that starts a line,
// or an object whose '{' starts a line (NDJSON). A byte 0 stands for the
// start of the response.
func hasBodyError(b []byte) bool {
	for off := 0; ; {
		j := bytes.Index(b[off:], bodyAnchor)
		if j < 0 {
			return false
		}
		i := off + j // "error" is b[i-2 : i+len(bodyAnchor)]
		if i >= 2 && b[i-1] == 'e' && b[i-2] == '"' {
			a := skipSpace(b, i+len(bodyAnchor))
			if a < len(b) && b[a] == ':' && bodyObjectStart(b, i-2) {
				return true
			}
		}
		off = i + 1
	}
}

// bodyObjectStart reports whether the key whose opening quote is b[q] is
// the first of the body's object, or of an element of its top-level array.
func bodyObjectStart(b []byte, q int) bool {
	p := backSpace(b, q)
	if p == 0 || b[p-1] != '{' {
		return false
	}
	if p >= 2 && (b[p-2] == '\n' || b[p-2] == '\r') {
		// A '{' that starts a line: one object a line (Ollama's NDJSON),
		// or Gemini's array element; a nested object is indented.
		return true
	}
	p = backSpace(b, p-1)
	if p == 0 {
		return false
	}
	switch b[p-1] {
	case 0:
		return true // the body is the object
	case '[':
		p = backSpace(b, p-1)
		return p > 0 && b[p-1] == 0 // the body's array
	case ',':
		// Gemini writes its array one element a line: "\n,\r\n{".
		return p >= 2 && (b[p-2] == '\n' || b[p-2] == '\r')
	}
	return false
}

// backSpace returns the index just past the last byte before b[p] that is
// not white space, or 0.
func backSpace(b []byte, p int) int {
	for p > 0 && isSpace(b[p-1]) {
		p--
	}
	return p
}
