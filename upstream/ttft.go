package upstream

import "bytes"

// contentKeys are the JSON keys whose non-empty string value is generated
// content: OpenAI-style delta.content, reasoning_content / reasoning, refusal
// and tool-call arguments; Anthropic text_delta.text, thinking_delta.thinking
// and input_json_delta.partial_json. Role-only frames and empty strings
// (OpenAI's first {"role":"assistant","content":""}, Anthropic's
// content_block_start with "text":"") carry none.
var contentKeys = [][]byte{
	[]byte(`"content"`),
	[]byte(`"text"`),
	[]byte(`"reasoning_content"`),
	[]byte(`"reasoning"`),
	[]byte(`"thinking"`),
	[]byte(`"partial_json"`),
	[]byte(`"arguments"`),
	[]byte(`"refusal"`),
}

// scanLimit bounds the bytes scanned for the first token; a stream with no
// content in its first scanLimit bytes gets no TTFT.
const scanLimit = 1 << 20

// overlap is how many bytes of the previous chunk are kept so that a key
// split across two reads is still found: the longest key, the colon, some
// white space, the quote and one character.
const overlap = 32

// tokenScanner finds the first generated content in an SSE or JSON byte
// stream, chunk by chunk, without allocating.
type tokenScanner struct {
	tail    [overlap]byte
	tailLen int
	scanned int
}

func (s *tokenScanner) reset() { *s = tokenScanner{} }

// scan reports whether b (the next bytes of the stream) completes the first
// content token.
func (s *tokenScanner) scan(b []byte) bool {
	if s.scanned >= scanLimit {
		return false
	}
	s.scanned += len(b)
	if s.tailLen > 0 {
		// Look at the seam: the kept tail plus the head of b.
		var seam [2 * overlap]byte
		n := copy(seam[:], s.tail[:s.tailLen])
		n += copy(seam[n:], b)
		if hasContent(seam[:n]) {
			return true
		}
	}
	if hasContent(b) {
		return true
	}
	if len(b) >= overlap {
		s.tailLen = copy(s.tail[:], b[len(b)-overlap:])
	} else {
		// Keep the last overlap bytes of tail+b.
		var joined [2 * overlap]byte
		n := copy(joined[:], s.tail[:s.tailLen])
		n += copy(joined[n:], b)
		if n > overlap {
			copy(s.tail[:], joined[n-overlap:n])
			n = overlap
		} else {
			copy(s.tail[:], joined[:n])
		}
		s.tailLen = n
	}
	return false
}

// hasContent reports whether b holds a content key followed by a non-empty
// string value.
func hasContent(b []byte) bool {
	for _, k := range contentKeys {
		rest := b
		for {
			i := bytes.Index(rest, k)
			if i < 0 {
				break
			}
			rest = rest[i+len(k):]
			if nonEmptyStringValue(rest) {
				return true
			}
		}
	}
	return false
}

// nonEmptyStringValue reports whether b starts with `:` and a string value
// that has at least one character (white space allowed around the colon).
func nonEmptyStringValue(b []byte) bool {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	if i >= len(b) || b[i] != ':' {
		return false
	}
	i++
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i+1 < len(b) && b[i] == '"' && b[i+1] != '"'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
