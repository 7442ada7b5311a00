package usage

// The per-API rules: which JSON keys carry generated content (they stop the
// first-token clock) and where the token counts are. One table per API;
// Generic is their union. The README's table says the same in prose.

// valueKind is what must follow a content key for it to count.
type valueKind uint8

const (
	nonEmptyString valueKind = iota // "key":"x..." (one character at least)
	objectValue                     // "key":{...}
)

// contentKey is one key whose value is generated content.
type contentKey struct {
	key  []byte // with its quotes
	kind valueKind
}

// rules are one API's.
type rules struct {
	// content are the keys of generated content in a response: in its SSE
	// events, and in a non-streamed answer (one JSON object) unless body
	// says otherwise.
	content []contentKey
	// body, when not nil, replaces content for a non-streamed answer: an
	// API whose events carry their text under other keys than its response
	// object does.
	body []contentKey
	// usage are the keys of the objects that hold token counts, with quotes.
	usage [][]byte
	// flatIn and flatOut, when set, are the keys (with quotes) of counts
	// that are members of the response's own objects, in no usage object
	// (Ollama's last line); usage, in and out are then unused.
	flatIn, flatOut []byte
	// in and out name the counts inside such an object: the last one met
	// in an object wins. outPlus are added to out (Gemini's thinking tokens,
	// which it bills as output but counts apart from the candidates').
	in, out, outPlus []string
	// inPlus are added to in, each once, when the last in count is
	// Anthropic's input_tokens, whichever usage object each came in (its
	// prompt-cache writes and reads, which input_tokens leaves out while
	// OpenAI's prompt_tokens and Gemini's promptTokenCount include them:
	// LiteLLM sends prompt_tokens beside cache_read_input_tokens, already
	// counted). At most maxInPlus.
	inPlus []string
}

// inPlusWith is the in key inPlus adds to.
const inPlusWith = "input_tokens"

// maxInPlus bounds rules.inPlus (the counts are kept in an array).
const maxInPlus = 2

// anthropicCacheIn are Anthropic's input tokens outside input_tokens.
var anthropicCacheIn = []string{"cache_creation_input_tokens", "cache_read_input_tokens"}

func strKey(k string) contentKey { return contentKey{[]byte(`"` + k + `"`), nonEmptyString} }
func objKey(k string) contentKey { return contentKey{[]byte(`"` + k + `"`), objectValue} }

var (
	keyUsage         = []byte(`"usage"`)
	keyUsageMetadata = []byte(`"usageMetadata"`)
)

var (
	// OpenAI chat.completion.chunk: choices[].delta.content, the reasoning
	// text of reasoning servers (vLLM, DeepSeek: reasoning_content; Ollama
	// /v1, OpenRouter: reasoning), refusal, tool_calls[].function.arguments;
	// legacy /v1/completions: choices[].text; audio output (gpt-4o-audio):
	// delta.audio.transcript and delta.audio.data (base64), while content
	// stays null. The first frame's {"role":"assistant","content":""}
	// carries none, nor does an audio object with only its id and
	// expires_at (or "" for transcript and data).
	openAIChatRules = rules{
		content: []contentKey{
			strKey("content"), strKey("reasoning_content"), strKey("reasoning"), strKey("refusal"), strKey("arguments"), strKey("text"),
			strKey("transcript"), strKey("data"),
		},
		usage: [][]byte{keyUsage},
		in:    []string{"prompt_tokens"},
		out:   []string{"completion_tokens"},
	}
	// OpenAI Responses: every response.*.delta event carries its text in
	// "delta" (output_text, reasoning_summary_text, reasoning_text,
	// refusal, function_call_arguments, audio, audio.transcript, ...).
	// response.created / in_progress / output_item.added /
	// content_part.added / *.done / completed carry no "delta" and never
	// stop the clock, although the done events repeat the text in "text"
	// and "arguments". Usage: response.completed's response.usage.
	// A non-streamed answer is the response object alone, its output items
	// whole: a message's output_text text or refusal, a reasoning item's
	// summary_text or reasoning_text text, a function call's arguments.
	// Its "text":{"format":...} setting is an object, not content.
	responsesRules = rules{
		content: []contentKey{strKey("delta")},
		body:    []contentKey{strKey("text"), strKey("refusal"), strKey("arguments")},
		usage:   [][]byte{keyUsage},
		in:      []string{"input_tokens"},
		out:     []string{"output_tokens"},
	}
	// Anthropic messages: content_block_delta's text_delta.text,
	// thinking_delta.thinking, input_json_delta.partial_json. message_start
	// holds input_tokens (and output_tokens 1), message_delta the running
	// output_tokens: the last of each wins. The prompt cache's tokens are
	// input too (tokens_in is the whole prompt, as OpenAI's prompt_tokens).
	// A non-streamed answer is the message whole: a text or thinking
	// block's text, or a tool_use block's input object (an answer that is
	// only a tool call has no text).
	anthropicRules = rules{
		content: []contentKey{strKey("text"), strKey("thinking"), strKey("partial_json")},
		body:    []contentKey{strKey("text"), strKey("thinking"), objKey("input")},
		usage:   [][]byte{keyUsage},
		in:      []string{"input_tokens"},
		inPlus:  anthropicCacheIn,
		out:     []string{"output_tokens"},
	}
	// Gemini: candidates[].content.parts[] with text (thought summaries
	// too), functionCall, inlineData (audio, images) or executableCode.
	// Every chunk repeats usageMetadata, the last one is complete.
	geminiRules = rules{
		content: []contentKey{strKey("text"), objKey("functionCall"), objKey("inlineData"), objKey("executableCode")},
		usage:   [][]byte{keyUsageMetadata},
		in:      []string{"promptTokenCount"},
		out:     []string{"candidatesTokenCount"},
		outPlus: []string{"thoughtsTokenCount"},
	}
	// Ollama's native API streams NDJSON, one JSON object a line: /api/chat
	// with message.content (message.thinking of a thinking model,
	// message.tool_calls[].function.arguments, an object), /api/generate
	// with response (and thinking). The last line ("done":true, its
	// content "") carries prompt_eval_count and eval_count beside the
	// timings; a non-streamed answer is that line with the whole text.
	ollamaRules = rules{
		content: []contentKey{strKey("content"), strKey("response"), strKey("thinking"), objKey("arguments")},
		flatIn:  []byte(`"prompt_eval_count"`),
		flatOut: []byte(`"eval_count"`),
	}
	// Generic: all of the above but Ollama's, for a path that names no API, and the
	// base64 "audio" of OpenAI's speech.audio.delta events (TTS with
	// stream_format sse).
	genericRules = rules{
		content: []contentKey{
			strKey("content"), strKey("text"), strKey("reasoning_content"), strKey("reasoning"), strKey("thinking"),
			strKey("partial_json"), strKey("arguments"), strKey("refusal"), strKey("delta"), strKey("audio"),
			strKey("transcript"), strKey("data"),
			objKey("functionCall"), objKey("inlineData"), objKey("executableCode"),
		},
		usage:   [][]byte{keyUsage, keyUsageMetadata},
		in:      []string{"prompt_tokens", "input_tokens", "promptTokenCount"},
		inPlus:  anthropicCacheIn,
		out:     []string{"completion_tokens", "output_tokens", "candidatesTokenCount"},
		outPlus: []string{"thoughtsTokenCount"},
	}
)

var rulesByAPI = [...]*rules{
	Generic:    &genericRules,
	OpenAIChat: &openAIChatRules,
	Responses:  &responsesRules,
	Anthropic:  &anthropicRules,
	Gemini:     &geminiRules,
	Ollama:     &ollamaRules,
}

// contentKeys returns the content keys of a streamed response (SSE
// events) or, when body is set, of a non-streamed one (one JSON object).
func (r *rules) contentKeys(body bool) []contentKey {
	if body && r.body != nil {
		return r.body
	}
	return r.content
}

func rulesFor(a API) *rules {
	if int(a) < len(rulesByAPI) {
		return rulesByAPI[a]
	}
	return &genericRules
}
