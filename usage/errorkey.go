package usage

import "bytes"

// An error key is the key "error" among the top-level keys of an event's
// JSON object, with a value that says there is an error: an object or a
// string that is not blank ("error":null, {}, "", " ", false, 0 or [] is
// no error). It may come after other keys (OpenRouter sends its mid-stream
// error as a chunk with "id", "model" and the rest first, "choices"
// after), and an SSE event's JSON may be cut over several data lines,
// which SSE joins with line feeds. The key is told from the word by the
// JSON's structure, walked byte by byte: the same key inside a nested
// object ("args":{"error":...}), or the text "error": inside a string
// (whose quotes are escaped), is not one.
//
// The walk costs a pass over every byte, so an SSE stream walks only the
// events that may hold the key: those that hold a possible key
// (indexErrorKey: the string "error" followed by a colon and the first
// byte of an object or a string), and those cut between reads (the walk's
// state crosses the cut). A JSON body (a Gemini array, Ollama's NDJSON) is
// walked whole.

// errorAnchor is what every error key holds: the end of its name, with the
// closing quote. It is found by its first byte: 'r' is rarer in JSON than
// 'e' or '"'. (bytes.Index costs more: for "error" with its quotes four
// to five times as much, since quotes are so many that it soon gives up
// its scan for the first byte and compares at every position; for the
// anchor a little more.)
const errorAnchor = `rror"`

// indexErrorKey returns the index in b of the first errorAnchor that may
// end an error key (mayBeKey), or -1. Most anchors in a normal stream are
// not one: OpenAI Responses sends "error":null in the response object of
// several events, and a string may end with the text "rror".
func indexErrorKey(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], 'r')
		if j < 0 {
			return -1
		}
		i += j
		if len(b)-i < len(errorAnchor) {
			return -1
		}
		if b[i+4] == '"' && b[i+3] == 'r' && b[i+2] == 'o' && b[i+1] == 'r' && mayBeKey(b, i) {
			return i
		}
		i++
	}
}

// mayBeKey reports whether the errorAnchor at b[a:] may end an error key
// that keyWalk finds: it closes the string "error", which is followed by a
// colon and by the first byte of an object or a string, each after blanks.
// The walk's match (keyWalk.feed) can come from nothing else, so an event
// without such bytes needs no walk. Where b does not tell (its start before
// the anchor, its end after it, or a line break, after which the event's
// next data line may go on), it may: the answer must never be no where the
// walk would find the key.
func mayBeKey(b []byte, a int) bool {
	if a >= 1 && b[a-1] != 'e' || a >= 2 && b[a-2] != '"' {
		return false // the end of another string ("mirror")
	}
	i := skipBlank(b, a+len(errorAnchor))
	if i == len(b) {
		return true
	}
	switch b[i] {
	case ':':
	case '\r', '\n':
		return true
	default:
		return false
	}
	if i = skipBlank(b, i+1); i == len(b) {
		return true
	}
	switch b[i] {
	case '{', '"', '\r', '\n':
		return true
	}
	return false // "error":null, false, a number or an array
}

const errorName = "error"

// What the object whose keys count awaits next (keyWalk.next).
const (
	nxNone   = iota // a value, or the ',' or '}' after one
	nxKey           // a key: after '{' or ','
	nxColon         // the ':' after the key "error"
	nxValue         // the value of the key "error"
	nxString        // the text of its string value: '"' after blanks is a blank one
	nxObject        // inside its object value: '}' after blanks is an empty one
)

// keyWalk finds an error key in JSON text fed piece by piece. Its zero
// value walks objects whose keys count at depth 1 (an SSE event's object,
// a JSON body's object, each object of NDJSON); top 1 moves them to depth 2
// (the elements of a body that is an array).
type keyWalk struct {
	depth  int32
	top    int32
	obj    bool // the value open at depth top+1 is an object
	str    bool // in a string
	esc    bool // after a backslash in a string
	broken bool // a line feed in a string: not JSON, nothing more is found
	key    int8 // in a key at depth top+1: bytes of "error" it matched; -1 otherwise
	next   uint8
}

// feed walks b, the next bytes of the JSON, and reports whether they
// complete an error key. It is on the path of every byte of the events it
// walks: the state is kept in locals (registers, not the struct in memory)
// and stored back once, on the way out.
func (w *keyWalk) feed(b []byte) (match bool) {
	if w.broken {
		return false
	}
	depth, top, obj, str, esc, key, next := w.depth, w.top, w.obj, w.str, w.esc, w.key, w.next
	broken := false
walk:
	for i := 0; i < len(b); i++ {
		c := b[i]
		if str {
			if esc {
				esc = false
				continue
			}
			if key < 0 {
				// Most strings are values or other keys: skip their text,
				// byte by byte while it is short (textEnd after that).
				for n := 0; c != '"' && c != '\\' && c != '\n'; n++ {
					if n < textRun {
						i++
					} else {
						i = textEnd(b, i)
					}
					if i == len(b) {
						break walk
					}
					c = b[i]
				}
			}
			switch c {
			case '"':
				str = false
				if key == int8(len(errorName)) {
					next = nxColon
				}
				key = -1
			case '\\':
				esc, key = true, -1
			case '\n':
				broken = true
				break walk
			default:
				if int(key) < len(errorName) && c == errorName[key] {
					key++
				} else {
					key = -1
				}
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '"':
			switch next {
			case nxValue:
				next = nxString
			case nxObject:
				match = true // a key: the object is not empty
				break walk
			case nxString:
				next = nxNone // "error":"": empty
			case nxKey:
				str, key, next = true, 0, nxNone
			default:
				str, key, next = true, -1, nxNone
			}
			continue
		}
		switch next {
		case nxValue:
			if c == '{' {
				// Not yet: "error":{} (a stored fine-tuning job's) is no
				// error.
				depth++
				next = nxObject
				continue
			}
		case nxObject:
			if c == '}' {
				depth--
				next = nxNone
				continue
			}
			match = true
			break walk
		case nxString:
			match = true // the first byte of a string that is not empty
			break walk
		}
		switch c {
		case ':':
			if next == nxColon {
				next = nxValue
				continue
			}
		case ',':
			if depth == top+1 && obj {
				next = nxKey
				continue
			}
		case '{', '[':
			depth++
			if depth == top+1 {
				obj = c == '{'
				if obj {
					next = nxKey
					continue
				}
			}
		case '}', ']':
			if depth > 0 {
				depth--
			}
		}
		next = nxNone
	}
	w.depth, w.obj, w.str, w.esc, w.key, w.next, w.broken = depth, obj, str, esc, key, next, broken
	return match
}

// textRun is how many bytes of a string's text keyWalk.feed looks at one by
// one before it searches for the text's end (textEnd): most texts (keys,
// ids, a delta of a few words) are shorter, and three searches cost as
// much as that many bytes looked at.
const textRun = 32

// textWindow bounds each of textEnd's searches, so that a text with many
// escapes is not searched to its end from each of them.
const textWindow = 256

// textEnd returns the index in b, from i on, of the first quote, backslash
// or line feed (where the text of a string ends, or an escape starts), or
// len(b): the end of a long text (a content delta, the whole answer in a
// Responses event or a Gemini body), found with IndexByte a window at a
// time.
func textEnd(b []byte, i int) int {
	for i < len(b) {
		w := b[i:min(len(b), i+textWindow)]
		n := len(w)
		if j := bytes.IndexByte(w, '"'); j >= 0 {
			n = j
		}
		if j := bytes.IndexByte(w[:n], '\\'); j >= 0 {
			n = j
		}
		if j := bytes.IndexByte(w[:n], '\n'); j >= 0 {
			n = j
		}
		if i += n; n < len(w) {
			return i
		}
	}
	return i
}

// The place of an sseWalk in the lines of the stream.
const (
	lnStart = iota // at the start of a line
	lnField        // in a field name that may be "data:"
	lnSpace        // after "data:": the space SSE drops, if any
	lnData         // in a data line's value
	lnSkip         // in another line
)

// sseWalk walks the data of one SSE event for an error key, across reads:
// it reads the lines, and feeds the value of each data line to a keyWalk,
// with the line feed SSE joins them with.
type sseWalk struct {
	keys  keyWalk
	line  uint8
	field uint8 // bytes of "data:" matched
	data  bool  // a data line was fed: the next one is joined with a line feed
}

const dataField = "data:"

var lineFeed = []byte{'\n'}

// walk walks b, bytes of the event. It returns when the event ends (a blank
// line: ended, with n the bytes up to and with the blank line's first
// byte), when an error key is found (match) or when b does (n = len(b)).
func (w *sseWalk) walk(b []byte) (match bool, n int, ended bool) {
	for i := 0; i < len(b); {
		switch w.line {
		case lnStart:
			switch b[i] {
			case '\n', '\r':
				return false, i + 1, true
			case 'd':
				w.line, w.field = lnField, 1
			default:
				w.line = lnSkip
			}
			i++
		case lnField:
			if b[i] != dataField[w.field] {
				w.line = lnSkip // not consumed: it may end the line
				continue
			}
			i++
			if w.field++; int(w.field) == len(dataField) {
				w.line = lnSpace
			}
		case lnSpace:
			if b[i] == ' ' {
				i++
			}
			w.line = lnData
			if w.data && w.keys.feed(lineFeed) {
				return true, i, false
			}
			w.data = true
		case lnData:
			end := len(b)
			j := bytes.IndexByte(b[i:], '\n')
			if j >= 0 {
				end = i + j
			}
			if w.keys.feed(b[i:end]) {
				return true, end, false
			}
			if j < 0 {
				return false, len(b), false
			}
			w.line, i = lnStart, end+1
		case lnSkip:
			j := bytes.IndexByte(b[i:], '\n')
			if j < 0 {
				return false, len(b), false
			}
			w.line, i = lnStart, i+j+1
		}
	}
	return false, len(b), false
}

// eventStart returns where the last event that starts in b[lo:hi] starts:
// past the last blank line there, or lo. It searches back from hi, line by
// line: the event is most often short, the read long.
func eventStart(b []byte, lo, hi int) int {
	for j := hi; ; {
		k := bytes.LastIndexByte(b[lo:j], '\n')
		if k < 0 {
			return lo
		}
		k += lo
		if k+1 < hi && (b[k+1] == '\n' || b[k+1] == '\r') {
			i := k + 1 // a blank line
			for i < hi && (b[i] == '\n' || b[i] == '\r') {
				i++
			}
			return i
		}
		j = k
	}
}

// endsEvent reports whether b ends with a blank line: the next read starts
// an event.
func endsEvent(b []byte) bool {
	n := len(b)
	switch {
	case n >= 2 && b[n-2] == '\n' && (b[n-1] == '\n' || b[n-1] == '\r'):
		return true
	case n >= 3 && b[n-1] == '\n' && b[n-2] == '\r' && b[n-3] == '\n':
		return true
	}
	return false
}
