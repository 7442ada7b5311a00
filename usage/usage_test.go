package usage

import (
	"strings"
	"testing"
)

const openAIStream = `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}

data: {"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46,"prompt_tokens_details":{"cached_tokens":0}}}

data: [DONE]

`

const anthropicStream = `event: message_start
data: {"type":"message_start","message":{"id":"m1","model":"claude","usage":{"input_tokens":25,"output_tokens":1}}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"say \"usage\":{\"input_tokens\":9}"}}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}

event: message_delta
data: {"type":"message_delta","delta":{},"usage":{"output_tokens":17}}

`

func TestFind(t *testing.T) {
	tests := []struct {
		name    string
		give    string
		in, out int64
		ok      bool
	}{
		{"openai stream", openAIStream, 12, 34, true},
		{"openai body", `{"id":"x","choices":[{"message":{"content":"hi"}}],"usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}}`, 3, 4, true},
		{"openai last wins", `data: {"usage":{"prompt_tokens":1,"completion_tokens":2}}` + "\n\n" + `data: {"usage":{"prompt_tokens":5,"completion_tokens":6}}`, 5, 6, true},
		{"anthropic stream", anthropicStream, 25, 17, true},
		{"anthropic delta with input", `data: {"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}` + "\n\n" + `data: {"type":"message_delta","usage":{"input_tokens":30,"output_tokens":9}}`, 30, 9, true},
		{"anthropic body", `{"type":"message","usage":{"input_tokens":10,"cache_creation":{"ephemeral_5m_input_tokens":99},"output_tokens":20}}`, 10, 20, true},
		{"anthropic prompt cache", `{"type":"message","usage":{"input_tokens":10,"cache_creation_input_tokens":200,"cache_read_input_tokens":3000,"cache_creation":{"ephemeral_5m_input_tokens":200},"output_tokens":20}}`, 3210, 20, true},
		{"anthropic prompt cache streamed", `data: {"type":"message_start","message":{"usage":{"input_tokens":4,"cache_creation_input_tokens":0,"cache_read_input_tokens":1500,"output_tokens":1}}}` + "\n\n" + `data: {"type":"message_delta","usage":{"output_tokens":9}}`, 1504, 9, true},
		{"prompt_tokens already hold the cache (LiteLLM)", `{"usage":{"prompt_tokens":3010,"completion_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":3000}}`, 3010, 5, true},
		{"no usage", `data: {"choices":[{"delta":{"content":"x"}}],"usage":null}` + "\n\ndata: [DONE]\n\n", 0, 0, false},
		{"only escaped usage", `{"content":"\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}"}`, 0, 0, false},
		{"truncated", `data: {"usage":{"prompt_tokens":12,"compl`, 0, 0, false},
		{"empty", ``, 0, 0, false},
		{"audio bytes", "\x00\xff\"usage\"\x00:{", 0, 0, false},
		{"negative ignored", `{"usage":{"prompt_tokens":-1,"completion_tokens":2}}`, 0, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, out, ok := Find([]byte(tt.give))
			if in != tt.in || out != tt.out || ok != tt.ok {
				t.Fatalf("Find = %d, %d, %v; want %d, %d, %v", in, out, ok, tt.in, tt.out, tt.ok)
			}
		})
	}
}

func TestModel(t *testing.T) {
	tests := []struct {
		name, give, want string
	}{
		{"first", `{"model":"gpt-4o","messages":[]}`, "gpt-4o"},
		{"after messages", `{"messages":[{"role":"user","content":"{\"model\":\"evil\"}","model":"nested"}],"model" : "claude-3"}`, "claude-3"},
		{"nested object only", `{"metadata":{"model":"inner"}}`, ""},
		{"spaces", " \n{ \"stream\" : true , \"model\"\t:\t\"m\" }", "m"},
		{"not string", `{"model":42}`, ""},
		{"absent", `{"input":"hello"}`, ""},
		{"not object", `["model","x"]`, ""},
		{"malformed before", `{"a":[1,2,"model":"x"`, ""},
		{"empty", ``, ""},
		{"tts", `{"model":"tts-1","input":"Hello","voice":"alloy"}`, "tts-1"},
		{"malformed after", `{"model":"a","messages":[`, "a"},
		// The first wins: the scan ends there, whatever the body's size.
		{"duplicate", `{"model":"cheap","messages":[],"model":"expensive"}`, "cheap"},
		{"escaped quote and backslash", `{"messages":[{"content":"say \"model\": \\"}],"model":"m2"}`, "m2"},
		{"escaped quote last", `{"messages":[{"content":"\"model\":\"x\""}],"model":"m3"}`, "m3"},
		// Escapes decoded, as the upstream reads the name: one model had
		// many names in the rows.
		{"escaped model", `{"model":"gpt\u002d4o","stream":true}`, "gpt-4o"},
		{"escaped quote in the model", `{"model":"a\"b\/c"}`, `a"b/c`},
		// An image of 1.5 MiB in base64 before the model, in the OpenAI
		// SDKs' order: a cut at 1 MiB left it without one.
		{"large image first", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,` +
			strings.Repeat("iVBORw0KGgo", 150<<10) + `"}}]}],"model":"gpt-4o","stream":true}`, "gpt-4o"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Model([]byte(tt.give)); got != tt.want {
				t.Fatalf("Model(%q) = %q; want %q", tt.give, got, tt.want)
			}
		})
	}
}

func TestInjectIncludeUsage(t *testing.T) {
	const ins = `"stream_options":{"include_usage":true},`
	tests := []struct {
		name, give, want string
		ok               bool
	}{
		{"stream", `{"model":"m","stream":true}`, `{` + ins + `"model":"m","stream":true}`, true},
		{"spaces", ` { "stream" : true }`, ` {` + ins + ` "stream" : true }`, true},
		{"not stream", `{"model":"m","stream":false}`, "", false},
		{"no stream key", `{"model":"m"}`, "", false},
		{"has options", `{"stream":true,"stream_options":{"include_usage":false}}`, "", false},
		{"options without include", `{"stream_options":{},"stream":true}`, "", false},
		{"nested stream", `{"metadata":{"stream":true}}`, "", false},
		{"stream string", `{"stream":"true"}`, "", false},
		{"malformed", `{"stream":true,`, "", false},
		{"trailing bytes", `{"model":"m","stream":true}trailing`, "", false},
		{"second object", `{"stream":true} {"stream":true}`, "", false},
		{"trailing white space", "{\"stream\":true} \r\n", "{" + ins + "\"stream\":true} \r\n", true},
		{"array", `[{"stream":true}]`, "", false},
		{"empty", ``, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("prefix:")
			got, ok := InjectIncludeUsage(dst, []byte(tt.give))
			if ok != tt.ok {
				t.Fatalf("ok = %v; want %v", ok, tt.ok)
			}
			want := "prefix:" + tt.want
			if string(got) != want {
				t.Fatalf("got %q; want %q", got, want)
			}
		})
	}
}

// TestFindSplitUsage: Anthropic (and the gateways that speak it) may
// spread one usage over message_start and message_delta; each count is
// the last one sent, null or absent ones changing nothing, and the input
// is input_tokens plus the prompt cache's counts wherever they came.
func TestFindSplitUsage(t *testing.T) {
	const start, delta = `data: {"type":"message_start","message":{"usage":`, "}}\n\n" + `data: {"type":"message_delta","usage":`
	tests := []struct {
		name, give string
		in, out    int64
	}{
		{"cache in start, input_tokens again in delta",
			start + `{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":1}` + delta + `{"input_tokens":5,"output_tokens":15}}`, 2105, 15},
		{"null cache in delta",
			start + `{"input_tokens":5,"cache_creation_input_tokens":100,"cache_read_input_tokens":2000,"output_tokens":1}` + delta + `{"input_tokens":5,"cache_creation_input_tokens":null,"cache_read_input_tokens":null,"output_tokens":15}}`, 2105, 15},
		{"cache only in delta (compatible gateways)",
			start + `{"input_tokens":3602,"output_tokens":1}` + delta + `{"cache_read_input_tokens":3604,"output_tokens":9}}`, 7206, 9},
		{"cache before input_tokens",
			start + `{"cache_read_input_tokens":70,"output_tokens":1}` + delta + `{"input_tokens":4,"output_tokens":9}}`, 74, 9},
		{"later cache count wins",
			start + `{"input_tokens":4,"cache_read_input_tokens":70,"output_tokens":1}` + delta + `{"cache_read_input_tokens":80,"output_tokens":9}}`, 84, 9},
	}
	for _, tt := range tests {
		for _, api := range []API{Anthropic, Generic} {
			if in, out, ok := FindAPI(api, []byte(tt.give)); !ok || in != tt.in || out != tt.out {
				t.Errorf("%s: FindAPI(%v) = %d, %d, %v; want %d, %d", tt.name, api, in, out, ok, tt.in, tt.out)
			}
		}
		// The same with message_start in a kept head, the rest in the tail.
		cut := len(start) + 1
		for cut < len(tt.give) && tt.give[cut-1] != '\n' {
			cut++
		}
		var tk Tokens
		tk.Scan(Anthropic, []byte(tt.give[:cut]))
		tk.Scan(Anthropic, []byte(tt.give[cut:]))
		if in, out, ok := tk.Counts(); !ok || in != tt.in || out != tt.out {
			t.Errorf("%s: head and tail: Counts = %d, %d, %v; want %d, %d", tt.name, in, out, ok, tt.in, tt.out)
		}
	}
}

// TestInPlusFits: every API's inPlus fits the array scanAt keeps them in.
func TestInPlusFits(t *testing.T) {
	for a, r := range rulesByAPI {
		if len(r.inPlus) > maxInPlus {
			t.Errorf("API %d: %d inPlus names, at most %d", a, len(r.inPlus), maxInPlus)
		}
	}
}
