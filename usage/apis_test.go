package usage

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// recorded is a stream read from testdata: the bytes of each relayed read
// and its arrival in milliseconds, as record.Chunks keeps them. A line
// "#at MS" starts a read; everything up to the next such line (newlines
// included) is its bytes.
type recorded struct {
	data []byte
	ends []uint32
	atMS []uint32
}

func loadStream(t testing.TB, name string) recorded {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var r recorded
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i+1], b[i+1:]
		} else {
			b = nil
		}
		if ms, ok := bytes.CutPrefix(line, []byte("#at ")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(ms)))
			if err != nil {
				t.Fatalf("%s: bad marker %q", name, line)
			}
			if len(r.atMS) > 0 {
				r.ends = append(r.ends, uint32(len(r.data)))
			}
			r.atMS = append(r.atMS, uint32(n))
			continue
		}
		if len(r.atMS) == 0 {
			t.Fatalf("%s: bytes before the first #at marker", name)
		}
		r.data = append(r.data, line...)
	}
	r.ends = append(r.ends, uint32(len(r.data)))
	return r
}

func (r recorded) chunk(i int) []byte {
	start := uint32(0)
	if i > 0 {
		start = r.ends[i-1]
	}
	return r.data[start:r.ends[i]]
}

// TestAPIStreams: for a stream of each API in its real shape, the
// first-token clock stops at the first content event's arrival, whatever
// comes before it (role frames, lifecycle events, empty blocks, pings), and
// the token counts are the API's.
func TestAPIStreams(t *testing.T) {
	tests := []struct {
		file, path string
		api        API
		ttftMS     uint32
		in, out    int64
	}{
		{"openai_chat.sse", "/v1/chat/completions", OpenAIChat, 310, 14, 5},
		{"openai_chat_tool.sse", "/v1/chat/completions", OpenAIChat, 260, 61, 16},
		{"vllm_reasoning.sse", "/v1/chat/completions", OpenAIChat, 180, 18, 103},
		{"ollama_v1.sse", "/ollama/v1/chat/completions", OpenAIChat, 230, 31, 3},
		{"openai_chat_audio.sse", "/v1/chat/completions", OpenAIChat, 455, 22, 48},      // audio.transcript; an id, expires_at or empty strings are not content
		{"openai_chat_audio_data.sse", "/v1/chat/completions", OpenAIChat, 380, 17, 12}, // audio.data before any transcript
		{"responses.sse", "/v1/responses", Responses, 400, 21, 9},
		{"responses_reasoning_tool.sse", "/v1/responses", Responses, 720, 75, 152},
		{"responses_function_call.sse", "/openai/v1/responses", Responses, 505, 64, 18},
		{"responses_refusal.sse", "/v1/responses", Responses, 345, 40, 7},
		{"anthropic.sse", "/v1/messages", Anthropic, 410, 472, 12},
		{"anthropic_cache.sse", "/v1/messages", Anthropic, 410, 472 + 128 + 2048, 12}, // prompt cache writes and reads
		{"anthropic_thinking_tool.sse", "/anthropic/v1/messages", Anthropic, 520, 391, 89},
		{"anthropic_tool_only.sse", "/v1/messages", Anthropic, 345, 350, 41},
		{"gemini.sse", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", Gemini, 520, 9, 19},
		{"gemini_thinking.sse", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", Gemini, 1400, 12, 20 + 128},
		{"gemini_tool.sse", "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:streamGenerateContent", Gemini, 700, 86, 13},
		{"ollama_chat.ndjson", "/api/chat", Ollama, 240, 18, 47}, // thinking first; an empty content is none
		{"ollama_generate.ndjson", "/ollama/api/generate", Ollama, 205, 31, 12},
		{"ollama_tool.ndjson", "/api/chat", Ollama, 410, 173, 22}, // arguments is an object
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			r := loadStream(t, tt.file)
			if got := APIForPath(tt.path); got != tt.api {
				t.Fatalf("APIForPath(%q) = %v, want %v", tt.path, got, tt.api)
			}
			// The stored-row path (relay reparse) and the live path (one
			// Scan per read) give the same chunk; Generic agrees on these
			// but Ollama's native API (its counts are no usage object, its
			// tool call's arguments an object).
			apis := []API{tt.api, Generic}
			if tt.api == Ollama {
				apis = apis[:1]
			}
			for _, api := range apis {
				i := FirstTokenChunk(api, false, 200, len(r.atMS), r.data, r.ends)
				if i < 0 || r.atMS[i] != tt.ttftMS {
					t.Fatalf("%v: first token in chunk %d, want the one at %d ms", api, i, tt.ttftMS)
				}
				var s ContentScanner
				s.Start(api, false, 200)
				live := -1
				for j := range r.atMS {
					if s.Scan(r.chunk(j)) {
						live = j
						break
					}
				}
				if live != i {
					t.Fatalf("%v: live scan stops at chunk %d, stored-row scan at %d", api, live, i)
				}
			}
			// Reads cut anywhere (every byte, every 7 bytes) find the token
			// inside the same event.
			want := FirstTokenChunk(tt.api, false, 200, len(r.atMS), r.data, r.ends)
			lo, hi := uint32(0), r.ends[want]
			if want > 0 {
				lo = r.ends[want-1]
			}
			for _, step := range []int{1, 7, 64} {
				var s ContentScanner
				s.Start(tt.api, false, 200)
				at := -1
				for off := 0; off < len(r.data); off += step {
					if s.Scan(r.data[off:min(off+step, len(r.data))]) {
						at = min(off+step, len(r.data)) - 1
						break
					}
				}
				if at < int(lo) || at >= int(hi)+step {
					t.Fatalf("reads of %d bytes: token completed at byte %d, want within [%d, %d)", step, at, lo, hi)
				}
			}
			in, out, ok := FindAPI(tt.api, r.data)
			if !ok || in != tt.in || out != tt.out {
				t.Fatalf("FindAPI = %d, %d, %v; want %d, %d", in, out, ok, tt.in, tt.out)
			}
			if in, out, ok := Find(r.data); tt.api != Ollama && (!ok || in != tt.in || out != tt.out) {
				t.Fatalf("Find (generic) = %d, %d, %v; want %d, %d", in, out, ok, tt.in, tt.out)
			}
			// An error status has no first token; a raw response's first
			// read is it.
			if i := FirstTokenChunk(tt.api, false, 500, len(r.atMS), r.data, r.ends); i != -1 {
				t.Fatalf("status 500: first token in chunk %d", i)
			}
			if i := FirstTokenChunk(tt.api, true, 200, len(r.atMS), nil, nil); i != 0 {
				t.Fatalf("raw: first token in chunk %d", i)
			}
		})
	}
}

// TestResponsesIgnoresDone: the Responses rules stop the clock on deltas
// only; a stream whose deltas never came (cut, or a server that sends the
// done events alone) has its text in the done events and response.completed,
// which are not first tokens.
func TestResponsesIgnoresDone(t *testing.T) {
	done := `event: response.output_text.done
data: {"type":"response.output_text.done","item_id":"m","output_index":0,"content_index":0,"text":"All at once."}

event: response.content_part.done
data: {"type":"response.content_part.done","item_id":"m","output_index":0,"content_index":0,"part":{"type":"output_text","annotations":[],"text":"All at once."}}

event: response.function_call_arguments.done
data: {"type":"response.function_call_arguments.done","item_id":"fc","output_index":1,"arguments":"{\"a\":1}"}

`
	if HasContent(Responses, []byte(done)) {
		t.Fatal("Responses: done events counted as content")
	}
	if !HasContent(Responses, []byte(`data: {"type":"response.audio.delta","delta":"UklGR"}`)) {
		t.Fatal("Responses: audio delta not counted")
	}
	if HasContent(Responses, []byte(`data: {"type":"response.output_text.delta","delta":""}`)) {
		t.Fatal("Responses: empty delta counted")
	}
}

func TestAPIForPath(t *testing.T) {
	tests := []struct {
		path string
		want API
	}{
		{"/v1/chat/completions", OpenAIChat},
		{"/v1/completions", OpenAIChat},
		{"/openai/deployments/gpt4o/chat/completions", OpenAIChat},
		{"/v1beta/openai/chat/completions", OpenAIChat},
		{"/v1/responses", Responses},
		{"/v1/responses/resp_68e1c0a9", Responses},
		{"/v1/responses/resp_68e1c0a9/input_items", Generic},
		{"/v1/messages", Anthropic},
		{"/v1beta/models/gemini-2.0-flash:streamGenerateContent", Gemini},
		{"/v1beta/models/gemini-2.0-flash:generateContent", Gemini},
		{"/v1/audio/speech", Generic},
		{"/api/chat", Ollama},
		{"/ollama/api/generate", Ollama},
		{"/api/tags", Generic},
		{"/api/embed", Generic},
		{"", Generic},
	}
	for _, tt := range tests {
		if got := APIForPath(tt.path); got != tt.want {
			t.Errorf("APIForPath(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

// TestTokensParts: counts gathered over the head and the tail of a
// response whose middle was not kept; a usage object cut at the head's end
// counts for nothing.
func TestTokensParts(t *testing.T) {
	head := `event: message_start
data: {"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}

event: content_block_delta
data: {"type":"content_block_delta","delta":{"type":"text_delta","text":"x \"usage\":{\"input_tokens\":9"}}
data: {"usage":{"input_tokens":77,"outp`
	tail := `ut_tokens":3}}
event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":17}}
`
	var tk Tokens
	tk.Scan(Anthropic, []byte(head))
	tk.Scan(Anthropic, []byte(tail))
	if in, out, ok := tk.Counts(); !ok || in != 25 || out != 17 {
		t.Fatalf("Counts = %d, %d, %v; want 25, 17", in, out, ok)
	}
}

func TestRequestModel(t *testing.T) {
	tests := []struct{ path, body, want string }{
		{"/v1/chat/completions", `{"model":"gpt-4o"}`, "gpt-4o"},
		{"/v1beta/models/gemini-2.0-flash:streamGenerateContent", `{"contents":[]}`, "gemini-2.0-flash"},
		{"/v1/projects/p/locations/l/publishers/google/models/gemini-2.5-pro:generateContent", ``, "gemini-2.5-pro"},
		{"/v1beta/models/x:streamGenerateContent", `{"model":"body-wins"}`, "body-wins"},
		{"/v1/models", ``, ""},
		{"/v1/models/gpt-4o", ``, ""},
	}
	for _, tt := range tests {
		if got := RequestModel(tt.path, []byte(tt.body)); got != tt.want {
			t.Errorf("RequestModel(%q, %q) = %q, want %q", tt.path, tt.body, got, tt.want)
		}
	}
}

// TestOllamaCountsInParts: Ollama's counts are members of its last line;
// a line the end of a kept head cut counts for nothing, a line a kept
// tail begins inside neither, and the tail's whole last line gives both.
// Counts nested in a line (a tool call's arguments object, which the
// model writes) are no counts.
func TestOllamaCountsInParts(t *testing.T) {
	const last = `{"model":"llama3.2","response":"","done":true,"prompt_eval_count":31,"eval_count":128,"eval_duration":9}` + "\n"
	cut := len(last) - len(`28,"eval_duration":9}`+"\n")
	var tk Tokens
	tk.Scan(Ollama, []byte(`{"model":"llama3.2","response":"Hi","done":false}`+"\n"+last[:cut]))
	if in, out, ok := tk.Counts(); ok || tk.HaveOut || tk.HaveIn || in != 0 || out != 0 {
		t.Fatalf("head cut inside the last line: Counts = %d, %d, %v; want none", in, out, ok)
	}
	// A tail begun inside the last line (its context array can be tens of
	// KiB): the counts that close its object count.
	long := `{"model":"llama3.2","response":"","done":true,"context":[` + strings.Repeat("128006,", 3000) + `1],"prompt_eval_count":26,"eval_count":259,"eval_duration":9}` + "\n"
	var lt Tokens
	lt.Scan(Ollama, []byte(long[:2048]))
	lt.Scan(Ollama, []byte(long[len(long)-14<<10:]))
	if in, out, ok := lt.Counts(); !ok || in != 26 || out != 259 {
		t.Fatalf("head and tail of a long last line: Counts = %d, %d, %v; want 26, 259", in, out, ok)
	}
	tk.Scan(Ollama, []byte(`"done":false}`+"\n"+last))
	if in, out, ok := tk.Counts(); !ok || in != 31 || out != 128 {
		t.Fatalf("Counts = %d, %d, %v; want 31, 128", in, out, ok)
	}
	forged := `{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"prompt_eval_count":0,"eval_count":0}}}]},"done":false}` + "\n" +
		`{"model":"m","message":{"role":"assistant","content":"x"},"done":false}` + "\n"
	for _, data := range []string{forged, forged[strings.Index(forged, `{"prompt_eval`):], forged[strings.Index(forged, `:0,"eval_count"`):]} {
		var f Tokens
		f.Scan(Ollama, []byte(data))
		if _, _, ok := f.Counts(); ok || f.HaveOut {
			t.Fatalf("counts taken from a tool call's arguments: %+v", f)
		}
	}
}

func TestStoredObject(t *testing.T) {
	for path, want := range map[string]bool{
		"/v1/batches":                              true,
		"/v1/batches/batch_1":                      true,
		"/v1/batches/batch_1/cancel":               true,
		"/v1/messages/batches/msgbatch_1/results":  true,
		"/v1/chat/completions/chatcmpl-1":          true,
		"/v1/chat/completions/chatcmpl-1/messages": true,
		"/v1/chat/completions":                     false,
		"/v1/chat/completions/":                    false, // a trailing slash: a generation
		"/batches/v1/chat/completions":             false, // a route prefix named batches
		"/objs/v1/batches/batch_1/cancel":          true,
		"/v1/batches/batch_1/other/thing":          false,
		"/v1/responses":                            false,
		// An Azure deployment named batches serves generations.
		"/openai/deployments/batches/completions": false,
		"/openai/deployments/batches/embeddings":  false,
		"/batches/responses":                      false,
		"/v1/chat/completions/messages":           false,
	} {
		if got := StoredObject(path); got != want {
			t.Errorf("StoredObject(%q) = %v, want %v", path, got, want)
		}
	}
}
