package usage

import (
	"bytes"
	"strings"
)

// Find returns the token counts of a whole captured response (an SSE
// stream or a JSON body) of an unknown API: FindAPI with Generic.
func Find(data []byte) (in, out int64, ok bool) { return FindAPI(Generic, data) }

// FindAPI returns the token counts of a whole captured response of api: an
// SSE stream or a JSON body.
//
// OpenAI chat puts "usage":{"prompt_tokens":P,"completion_tokens":C} in the
// final stream chunk (when asked, see InjectIncludeUsage) or in a
// non-stream body; the Responses API "usage":{"input_tokens",
// "output_tokens"} in response.completed; Anthropic input_tokens in
// message_start and the running output_tokens in message_delta; Gemini
// "usageMetadata":{"promptTokenCount","candidatesTokenCount"} in every
// chunk. Across all usage objects of a stream the last value of each count
// wins (a null or absent one changes nothing), in a JSON body the last
// object whole, and Anthropic's prompt-cache counts
// are added to the last input_tokens wherever they came (Tokens). ok is
// false unless both were found: the caller then stores NULL, not 0. FindAPI does not allocate.
func FindAPI(api API, data []byte) (in, out int64, ok bool) {
	var t Tokens
	t.Scan(api, data)
	return t.Counts()
}

// Tokens gathers token counts over several scans of one response, in
// stream order: the head and the tail of a response whose middle was not
// kept (record.Window).
//
// Each count is kept apart, the last value of each winning, and summed
// only in Counts: Anthropic spreads one usage over message_start and
// message_delta (input_tokens in the one, the prompt cache's counts in the
// other, or all of them in the first and input_tokens again in the last),
// so an object that holds some counts leaves the others as they were.
type Tokens struct {
	In, Out         int64 // the last in count (without inPlus) and out count
	HaveIn, HaveOut bool
	// inPlus are the last rules.inPlus counts, added to In when the last in
	// count was Anthropic's input_tokens (inTakesPlus).
	inPlus      [maxInPlus]int64
	inTakesPlus bool
	// shape is the response's, told by the first scan: in one JSON body
	// (a non-streamed answer) a usage object replaces all that came
	// before it, so that an object nested in the content (a tool call's
	// input the model wrote, {"usage":{"cache_read_input_tokens":...}})
	// leaves nothing behind once the answer's own usage, last, comes.
	shape shape
}

// CountsFor is Counts for a response to path: an embeddings answer's usage
// has an input count alone ({"prompt_tokens":8,"total_tokens":8}), whose
// output is 0 (it was dropped, stored NULL, charged nothing).
func (t *Tokens) CountsFor(path string) (in, out int64, ok bool) {
	if t.HaveIn && !t.HaveOut && strings.HasSuffix(path, "/embeddings") {
		t.Out, t.HaveOut = 0, true
	}
	return t.Counts()
}

// Counts returns the counts, ok only when both were found.
func (t *Tokens) Counts() (in, out int64, ok bool) {
	if !t.HaveIn || !t.HaveOut {
		return 0, 0, false
	}
	in = t.In
	if t.inTakesPlus {
		for _, n := range t.inPlus {
			in += n // each below 1e18 (parseUint): no overflow
		}
	}
	return in, t.Out, true
}

// Scan reads the usage objects of api in data, later ones overriding what
// earlier scans found. data may start or end in the middle of an object: a
// cut object is skipped. It does not allocate.
func (t *Tokens) Scan(api API, data []byte) {
	if t.shape == shapeUnknown {
		t.shape = shapeOf(data)
	}
	r := rulesFor(api)
	if r.flatIn != nil {
		t.scanFlat(r, data)
		return
	}
	if len(r.usage) == 1 {
		t.scanKey(r, r.usage[0], data)
		return
	}
	// Several container keys (Generic): visit the objects in stream order
	// so that the last one wins across kinds too. Each key's next place is
	// kept until the scan passes it: searching every key again after each
	// object went over the rest of data once per object found (a 200-chunk
	// stream with "usage":null in each took a millisecond).
	var next [maxUsageKeys]int
	keys := r.usage[:min(len(r.usage), maxUsageKeys)]
	for i, k := range keys {
		next[i] = indexKey(data, k)
	}
	for {
		best := -1
		for i, at := range next[:len(keys)] {
			if at >= 0 && (best < 0 || at < next[best]) {
				best = i
			}
		}
		if best < 0 {
			return
		}
		off := t.scanAt(r, keys[best], data, next[best])
		for i, k := range keys {
			if at := next[i]; at >= 0 && at < off {
				next[i] = indexFrom(data, k, off)
			}
		}
	}
}

// maxUsageKeys bounds the container keys of one API's rules (Generic has
// the most).
const maxUsageKeys = 4

// indexFrom returns the first place of key in data at or after off, or -1.
func indexFrom(data, key []byte, off int) int {
	if off >= len(data) {
		return -1
	}
	j := indexKey(data[off:], key)
	if j < 0 {
		return -1
	}
	return off + j
}

// indexKey is bytes.Index(s, key) for a key in quotes. It looks for the
// key without its opening quote, then checks the byte before: JSON has a
// quote every few bytes, so many that bytes.Index gives up its fast scan
// for the first byte and compares at every position, four to five times
// slower over a stream, while a key's first letter is rare enough for
// the fast scan.
func indexKey(s, key []byte) int {
	if len(key) < 2 || key[0] != '"' {
		return bytes.Index(s, key)
	}
	rest := key[1:]
	for off := 1; off < len(s); {
		j := bytes.Index(s[off:], rest)
		if j < 0 {
			return -1
		}
		j += off
		if s[j-1] == '"' {
			return j - 1
		}
		off = j + 1
	}
	return -1
}

// scanKey visits every object under key in data.
func (t *Tokens) scanKey(r *rules, key, data []byte) {
	for off := 0; off < len(data); {
		j := indexKey(data[off:], key)
		if j < 0 {
			return
		}
		off = t.scanAt(r, key, data, off+j)
	}
}

// scanAt reads the object under the key found at data[at:] and returns
// where the search goes on.
func (t *Tokens) scanAt(r *rules, key, data []byte, at int) int {
	i := at + len(key)
	if at > 0 && data[at-1] == '\\' {
		return i // an escaped quote: text inside a string
	}
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != ':' {
		return i
	}
	o, isObj := openObj(data[i+1:])
	if !isObj {
		return i + 1 // "usage":null in OpenAI stream chunks
	}
	var in, out, plus int64
	var inPlus [maxInPlus]int64
	var haveInPlus [maxInPlus]bool
	haveIn, haveOut, havePlus, inTakesPlus := false, false, false, false
	for {
		k, v, more := o.next()
		if !more {
			break
		}
		n, num := parseUint(v)
		if !num {
			continue // null, absent or not a count: the last one stays
		}
		switch {
		case oneOf(k, r.in):
			in, haveIn, inTakesPlus = n, true, string(k) == inPlusWith
		case oneOf(k, r.out):
			out, haveOut = n, true
		case oneOf(k, r.outPlus):
			plus, havePlus = n, true
		default:
			for j, name := range r.inPlus {
				if string(k) == name {
					inPlus[j], haveInPlus[j] = n, true
				}
			}
		}
	}
	if o.err {
		// A cut object (the end of a kept head, a truncated stream): what
		// it held so far may be a partial count; keep none of it.
		return i + 1 + max(o.i, 1)
	}
	if t.shape == shapeBody && (haveIn || haveOut || havePlus || haveInPlus != [maxInPlus]bool{}) {
		*t = Tokens{shape: shapeBody}
	}
	if haveIn {
		t.In, t.HaveIn, t.inTakesPlus = in, true, inTakesPlus
	}
	for j, have := range haveInPlus {
		if have {
			t.inPlus[j] = inPlus[j]
		}
	}
	if haveOut || havePlus {
		t.Out, t.HaveOut = out+plus, true
	}
	return i + 1 + o.i
}

// scanFlat reads the counts of rules whose counts stand as plain members
// (rules.flatIn, flatOut) of the response's own line objects (NDJSON): a
// line that holds the out count's key is walked, and its counts are taken
// only when they are members of that line's object itself and the line is
// that one object whole. A tool call's arguments are a JSON object, not a
// string, in Ollama's lines, so a model could write {"eval_count":0} into
// them: nested, it counts for nothing; so does a line cut by the end of
// data (a kept head) or begun before data (a kept tail). The last line
// with counts wins.
func (t *Tokens) scanFlat(r *rules, data []byte) {
	for off := 0; off < len(data); {
		j := indexKey(data[off:], r.flatOut)
		if j < 0 {
			return
		}
		at := off + j
		start := bytes.LastIndexByte(data[:at], '\n') + 1
		end := len(data)
		if k := bytes.IndexByte(data[at:], '\n'); k >= 0 {
			end = at + k
		}
		t.lineCounts(r, data[start:end])
		off = end + 1
	}
}

// lineCounts takes the flat counts of line when it is one JSON object
// whole that holds them as its own members; or, for a line whose start
// data does not hold (a kept tail begun inside Ollama's last line, whose
// context array can be tens of KiB), when its members from the first
// count on close the line's object: a count nested in a tool call's
// arguments is followed by more closing brackets.
func (t *Tokens) lineCounts(r *rules, line []byte) {
	o, ok := openObj(line)
	if !ok {
		o, ok = tailMembers(line, r.flatIn, r.flatOut)
		if !ok {
			return
		}
	}
	inName, outName := r.flatIn[1:len(r.flatIn)-1], r.flatOut[1:len(r.flatOut)-1]
	var in, out int64
	haveIn, haveOut := false, false
	for {
		k, v, more := o.next()
		if !more {
			break
		}
		switch {
		case bytes.Equal(k, inName):
			in, haveIn = parseUint(v)
		case bytes.Equal(k, outName):
			out, haveOut = parseUint(v)
		}
	}
	if o.err || skipSpace(line, o.i) != len(line) || !haveOut {
		return // not one object to the line's end: cut, or a nested one
	}
	t.Out, t.HaveOut = out, true
	if haveIn {
		t.In, t.HaveIn, t.inTakesPlus = in, true, false
	}
}

// tailMembers positions a member walk at the comma before the first of
// the keys in line (a line cut at its start), as if inside its object.
func tailMembers(line []byte, keys ...[]byte) (obj, bool) {
	at := -1
	for _, k := range keys {
		if i := indexKey(line, k); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	if at <= 0 {
		return obj{}, false
	}
	i := at - 1
	for i > 0 && isSpace(line[i]) {
		i--
	}
	if line[i] != ',' {
		return obj{}, false
	}
	return obj{b: line, i: i, n: 1}, true
}

// oneOf reports whether k is one of names (no allocation: the compiler
// compares string(k) without converting).
func oneOf(k []byte, names []string) bool {
	for _, n := range names {
		if string(k) == n {
			return true
		}
	}
	return false
}
