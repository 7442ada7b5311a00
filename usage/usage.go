package usage

import "bytes"

var usageKey = []byte(`"usage"`)

// Find returns the token counts of the last usage object in data, a whole
// captured response: an SSE stream or a JSON body, OpenAI or Anthropic.
//
// OpenAI puts "usage":{"prompt_tokens":P,"completion_tokens":C} in the final
// stream chunk (when asked, see InjectIncludeUsage) or in a non-stream body.
// Anthropic sends input_tokens in message_start and the running output_tokens
// in message_delta. Across all usage objects the last prompt/input count and
// the last completion/output count win. ok is false unless both were found:
// the caller then stores NULL, not 0. Find does not allocate.
func Find(data []byte) (in, out int64, ok bool) {
	haveIn, haveOut := false, false
	for off := 0; off < len(data); {
		j := bytes.Index(data[off:], usageKey)
		if j < 0 {
			break
		}
		i := off + j + len(usageKey)
		off = i
		if off-len(usageKey) > 0 && data[off-len(usageKey)-1] == '\\' {
			continue // an escaped quote: text inside a string
		}
		i = skipSpace(data, i)
		if i >= len(data) || data[i] != ':' {
			continue
		}
		o, isObj := openObj(data[i+1:])
		if !isObj {
			continue // "usage":null in OpenAI stream chunks
		}
		for {
			k, v, more := o.next()
			if !more {
				break
			}
			n, num := parseUint(v)
			if !num {
				continue
			}
			switch string(k) { // no allocation: compiler-optimised comparison
			case "prompt_tokens", "input_tokens":
				in, haveIn = n, true
			case "completion_tokens", "output_tokens":
				out, haveOut = n, true
			}
		}
		off = i + 1 + o.i
	}
	if !haveIn || !haveOut {
		return 0, 0, false
	}
	return in, out, true
}
