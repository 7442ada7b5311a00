package usage

import "bytes"

// An error the provider sends inside a 200 response, after the status
// line went out, is seen by its event structure, never by the word alone
// (a model that writes "error" is no error):
//
//   - an SSE line "event: error" (Anthropic; OpenAI Responses), or a line
//     of a field named error whose value is a JSON object ("error: {...}":
//     llama.cpp's server), which SSE readers skip as a field they do not
//     know (a text body's line "error: the disk was full" is none);
//   - an SSE data line whose JSON object starts with "type":"error"
//     (`data: {"type":"error",...}`: Anthropic, OpenAI Responses) or
//     "type":"response.failed";
//   - an error key (errorkey.go): the key "error", with an object or a
//     string that is not empty as its value, among the top-level keys of
//     an SSE event's JSON (`data: {"error":{...}}`: OpenAI chat and
//     compatible servers, vLLM, Gemini with alt=sse; OpenRouter's chunk
//     with "error" after "id" and "model"), of a JSON body's object, or of
//     an element of a body that is an array (a Gemini stream without
//     alt=sse is one JSON array, an element at a time), or of each object
//     of NDJSON (Ollama's native API).
//
// Inside a JSON string a quote is always escaped and a line break is
// "\n", two characters: the text of a content delta cannot look like any
// of these. The same rules apply to every API: each API's errors take one
// of these forms, and none of them is normal content in another.

// errOverlap bounds the bytes kept across reads so that a marker split
// between two reads is still found: the head of an SSE line, up to the end
// of its marker. A marker with more white space than fits is not found.
const errOverlap = 64

// The SSE markers, each at the start of a line (sseLineError):
//
//	error: {
//	event: error               event: response.failed
//	data: {"type":"error"      data: {"type":"response.failed"
//
// with any spaces or tabs where JSON allows white space and after the
// colon of the field, and a CR or LF right after an event's name.
var (
	eventNames = [...]string{"error", "response.failed"}
	typeValues = [...]string{`"error"`, `"response.failed"`}
)

// StreamErrorScanner finds an error event in a response, read by read as
// the bytes arrive, without allocating: the relay runs it on every relayed
// read of an sse route's response, `relay reparse` (HasStreamError) on the
// stored chunks. In an SSE stream it looks at the start of each line (one
// search for line feeds per read) and walks the events that may hold an
// error key (errorkey.go); a JSON body is walked whole. The zero value is
// not ready: call Start.
type StreamErrorScanner struct {
	off   bool // a raw route or an error status: nothing to find
	found bool
	shape shape
	// SSE: the head of the line the last read ended in, while it may still
	// be a marker (open); open with no bytes at a line's start.
	line    [errOverlap]byte
	lineLen int
	open    bool
	// SSE: the event the last read ended in, walked for an error key
	// (walking) across the cut.
	ev      sseWalk
	walking bool
	// JSON body: its walk for an error key.
	body keyWalk
}

// Start readies s for a new response: only a success (2xx) of an sse
// route is scanned. A raw (binary) response is not, nor an error status
// (400 and up, whose whole body is an error already typed
// upstream_status), nor a redirect's page (3xx), whose body may well hold
// {"error":...} without being an error inside a stream.
func (s *StreamErrorScanner) Start(raw bool, status int) {
	*s = StreamErrorScanner{off: raw || status < 200 || status >= 300, open: true}
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
		if s.shape = shapeOf(b); s.shape == shapeBody && b[skipSpace(b, 0)] == '[' {
			s.body.top = 1 // an array: its elements' keys count
		}
	}
	var hit bool
	switch s.shape {
	case shapeStream:
		hit = s.scanLines(b) || s.scanEvents(b)
	case shapeBody:
		hit = s.scanBody(b)
	default: // white space so far: keep both states
		hit = s.scanLines(b) || s.scanEvents(b) || s.scanBody(b)
	}
	s.found = hit
	return hit
}

// scanLines looks for an SSE marker at the start of each line of b, and of
// the line the last read ended in.
func (s *StreamErrorScanner) scanLines(b []byte) bool {
	if s.open && s.lineLen == 0 {
		// Blank lines first: the line starts after them, as in the loop
		// below.
		k := 0
		for k < len(b) && (b[k] == '\n' || b[k] == '\r') {
			k++
		}
		if b = b[k:]; len(b) == 0 {
			return false
		}
	}
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

// plainData reports whether h starts with `data: {"` and a key that is not
// "type": a data line with no marker, told without the full match.
func plainData(h []byte) bool {
	return len(h) > 8 && h[8] != 't' && h[7] == '"' && h[6] == '{' && h[5] == ' ' &&
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
		if len(h) > 1 && h[1] == 'r' {
			// llama.cpp's "error: {...}": a JSON object must follow, so
			// that a text body's line "error: the disk was full" is none.
			i, st := lit(h, 0, "error:")
			if st != litOK {
				return false, st == litShort
			}
			if i = skipBlank(h, i); i == len(h) {
				return false, true
			}
			return h[i] == '{', false
		}
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
		if h[i+1] != 't' {
			return false, false // the first key is another: most data lines
		}
		if i, st = lit(h, i+1, `type"`); st != litOK {
			return false, st == litShort
		}
		if i = skipBlank(h, i); i == len(h) {
			return false, true
		}
		if h[i] != ':' {
			return false, false
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

// scanEvents walks for an error key the events of an SSE stream that may
// hold one: the event the last read ended in, those of b that hold a
// possible key (indexErrorKey), and the one b ends in, if b does not end an
// event (its walk goes on in the next read). An event that starts and ends
// in b without a possible key cannot hold the key: most reads are that.
func (s *StreamErrorScanner) scanEvents(b []byte) bool {
	pos := 0
	if s.walking {
		match, n, ended := s.ev.walk(b)
		if match {
			return true
		}
		if !ended {
			return false
		}
		s.walking, pos = false, n
	}
	for pos < len(b) {
		var start int
		if a := indexErrorKey(b[pos:]); a >= 0 {
			start = eventStart(b, pos, pos+a)
		} else if endsEvent(b) {
			return false
		} else {
			start = eventStart(b, pos, len(b))
		}
		s.ev = sseWalk{}
		match, n, ended := s.ev.walk(b[start:])
		if match {
			return true
		}
		if !ended {
			s.walking = true
			return false
		}
		pos = start + n
	}
	return false
}

// scanBody walks b, the next bytes of a JSON body, for an error key.
func (s *StreamErrorScanner) scanBody(b []byte) bool { return s.body.feed(b) }

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
