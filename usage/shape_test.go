package usage

import (
	"strings"
	"testing"
)

// responseObject is a non-streamed OpenAI Responses answer in the API's own
// layout (pretty-printed, as the API sends it) with output items in place
// of OUTPUT.
const responseObject = `{
  "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
  "object": "response",
  "created_at": 1741476542,
  "status": "completed",
  "error": null,
  "incomplete_details": null,
  "instructions": "Answer briefly.",
  "model": "gpt-4.1-2025-04-14",
  "output": [OUTPUT],
  "parallel_tool_calls": true,
  "reasoning": {"effort": null, "summary": null},
  "store": true,
  "text": {"format": {"type": "text"}, "verbosity": "medium"},
  "tool_choice": "auto",
  "tools": [{"type": "function", "name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}}],
  "usage": {"input_tokens": 36, "output_tokens": 87, "total_tokens": 123},
  "metadata": {}
}`

// TestResponsesBody: a non-streamed Responses answer (one JSON body) has
// its first token where its output carries text (a message's output_text
// or refusal, a reasoning summary, a function call's arguments), as a
// non-streamed chat completion has it in message.content; its settings
// ("text": {"format"}, instructions, tools) and empty items are none. A
// stream's done events, which repeat the same keys, still are not: the
// shape, not the API, decides.
func TestResponsesBody(t *testing.T) {
	with := func(output string) string { return strings.Replace(responseObject, "OUTPUT", output, 1) }
	tests := []struct {
		name, body string
		want       bool
	}{
		{"message", with(`{"type": "message", "id": "msg_1", "status": "completed", "role": "assistant", "content": [{"type": "output_text", "annotations": [], "text": "Hi there."}]}`), true},
		{"refusal", with(`{"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]}`), true},
		{"reasoning summary", with(`{"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "**Weighing options**"}], "encrypted_content": "gAAAAB"}`), true},
		{"function call", with(`{"type": "reasoning", "id": "rs_1", "summary": []}, {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}", "status": "completed"}`), true},
		{"no output", with(``), false},
		{"empty text", with(`{"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "annotations": [], "text": ""}]}`), false},
		{"encrypted reasoning only", with(`{"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAAB"}`), false},
		{"done events of a stream", "\n" + `event: response.output_text.done
data: {"type":"response.output_text.done","item_id":"m","output_index":0,"content_index":0,"text":"All at once."}

event: response.completed
data: {"type":"response.completed","response":{"output":[{"type":"message","content":[{"type":"output_text","text":"All at once."}]}]}}
`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.body)
			if got := HasContent(Responses, b); got != tt.want {
				t.Fatalf("HasContent = %v, want %v", got, tt.want)
			}
			// Read by read, however the body is cut (the first read may
			// be white space alone), the scan finds it in the same place.
			for _, step := range []int{1, 7, 64, len(b)} {
				if got := scanInReads(Responses, b, step); got != tt.want {
					t.Fatalf("reads of %d bytes: found %v, want %v", step, got, tt.want)
				}
			}
			// Generic finds the text too; a 400 has no first token.
			if tt.want && !HasContent(Generic, b) {
				t.Fatal("Generic rules miss it")
			}
			if i := FirstTokenChunk(Responses, false, 400, 1, b, []uint32{uint32(len(b))}); i != -1 {
				t.Fatalf("status 400: first token in chunk %d", i)
			}
		})
	}
}

// TestShapeOf: the first byte other than white space tells a JSON body
// from an SSE stream.
func TestShapeOf(t *testing.T) {
	for in, want := range map[string]shape{
		"":                 shapeUnknown,
		" \r\n\t":          shapeUnknown,
		`{"id":"resp_1"}`:  shapeBody,
		"\n  [{}]":         shapeBody,
		"data: {}\n\n":     shapeStream,
		"event: x\n":       shapeStream,
		": keep-alive\n\n": shapeStream,
	} {
		if got := shapeOf([]byte(in)); got != want {
			t.Errorf("shapeOf(%q) = %d, want %d", in, got, want)
		}
	}
}

// TestAnthropicBody: a non-streamed Anthropic message has its first token
// in a text or thinking block, or in a tool_use block's input when the
// answer is only a tool call (it has no text); a message with no content
// block has none.
func TestAnthropicBody(t *testing.T) {
	msg := func(content string) string {
		return `{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[` + content +
			`],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":40,"output_tokens":30}}`
	}
	tests := []struct {
		name, body string
		want       bool
	}{
		{"text", msg(`{"type":"text","text":"Hello"}`), true},
		{"thinking", msg(`{"type":"thinking","thinking":"Let me see","signature":"abc"}`), true},
		{"tool use only", msg(`{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}`), true},
		{"no content", msg(``), false},
		{"empty text", msg(`{"type":"text","text":""}`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.body)
			if got := HasContent(Anthropic, b); got != tt.want {
				t.Fatalf("HasContent = %v, want %v", got, tt.want)
			}
			for _, step := range []int{1, 7, len(b)} {
				if got := scanInReads(Anthropic, b, step); got != tt.want {
					t.Fatalf("reads of %d bytes: found %v, want %v", step, got, tt.want)
				}
			}
		})
	}
}

// TestBodyUsageLastObjectWhole: in a non-streamed answer the last usage
// object counts whole: one the model wrote into a tool call's input (an
// object, not escaped) leaves no count behind, though the answer's own
// usage has no prompt-cache fields. It was counted field by field, as a
// stream's, and a tool input's cache_read_input_tokens of 987654 was added
// to the prompt.
func TestBodyUsageLastObjectWhole(t *testing.T) {
	body := `{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"f",` +
		`"input":{"usage":{"input_tokens":1,"output_tokens":1,"cache_read_input_tokens":987654}}}],` +
		`"stop_reason":"tool_use","usage":{"input_tokens":40,"output_tokens":30}}`
	for _, api := range []API{Anthropic, Generic} {
		in, out, ok := FindAPI(api, []byte(body))
		if !ok || in != 40 || out != 30 {
			t.Errorf("%v: tokens %d/%d (%v), want 40/30", api, in, out, ok)
		}
	}
	// A stream still takes each count's last value across its events:
	// message_start's input and cache counts, message_delta's output.
	stream := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":10,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n"
	if in, out, ok := FindAPI(Anthropic, []byte(stream)); !ok || in != 15 || out != 7 {
		t.Errorf("stream: tokens %d/%d (%v), want 15/7", in, out, ok)
	}
}

// scanInReads reports whether a ContentScanner for api finds the first
// token in b read step bytes at a time.
func scanInReads(api API, b []byte, step int) bool {
	var s ContentScanner
	s.Start(api, false, 200)
	for off := 0; off < len(b); off += step {
		if s.Scan(b[off:min(off+step, len(b))]) {
			return true
		}
	}
	return false
}
