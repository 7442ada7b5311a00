package usage

import (
	"os"
	"strings"
	"testing"
)

// In-stream errors in each provider's shape, after some normal content.
var streamErrorCases = []struct {
	name, stream string
}{
	{"anthropic", "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n" +
		"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n" +
		"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"},
	{"anthropic-no-event-line", "data: {\"type\":\"ping\"}\n\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}\n\n"},
	{"anthropic-crlf", "event: ping\r\ndata: {\"type\": \"ping\"}\r\n\r\nevent:error\r\ndata: {\"type\": \"error\"}\r\n\r\n"},
	{"openai-chat", "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
		"data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n"},
	{"vllm", "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"a\"}}]}\n\ndata: {\"error\": {\"object\": \"error\", \"message\": \"out of memory\", \"type\": \"InternalServerError\", \"code\": 500}}\n\n"},
	{"responses", "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"error\":null}}\n\n" +
		"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"x\",\"param\":null,\"sequence_number\":3}\n\n"},
	{"responses-failed", "event: response.failed\ndata: {\"type\":\"response.failed\",\"sequence_number\":9,\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\"}}}\n\n"},
	{"responses-failed-no-event-line", "data: {\"type\": \"response.failed\", \"response\": {}}\n\n"},
	{"gemini-sse", "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hi\"}],\"role\": \"model\"}}]}\r\n\r\n" +
		"data: {\"error\": {\"code\": 503, \"message\": \"The model is overloaded.\", \"status\": \"UNAVAILABLE\"}}\r\n\r\n"},
	{"gemini-array", "[{\n  \"candidates\": [\n    {\n      \"content\": {\n        \"parts\": [\n          {\n            \"text\": \"Hi\"\n          }\n        ]\n      }\n    }\n  ]\n}\n,\r\n" +
		"{\n  \"error\": {\n    \"code\": 500,\n    \"message\": \"Internal error\",\n    \"status\": \"INTERNAL\"\n  }\n}\n]"},
	{"gemini-array-first", "[{\n  \"error\": {\n    \"code\": 500,\n    \"message\": \"x\"\n  }\n}\n]"},
	{"ollama-ndjson", "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n{\"error\":\"an error was encountered while running the model\"}\n"},
	{"error-first", "data: {\"error\":{\"message\":\"x\"}}\n\n"},
	// llama.cpp's server: an SSE field named error.
	{"llama.cpp-first", ": ping\n\nerror: {\"code\":500}\n\n"},
	{"llama.cpp-error-only", "error: {\"code\":400,\"message\":\"the request exceeds the available context size\",\"type\":\"exceed_context_size_error\"}\n\n"},
	{"llama.cpp", "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
		"error: {\"code\":500,\"message\":\"llama_decode failed\",\"type\":\"server_error\"}\n\n"},
	{"json-body", "{\"error\":{\"message\":\"x\",\"type\":\"server_error\"}}"},
	// The error key after other keys: OpenRouter's mid-stream error chunk.
	{"openrouter", "data: {\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"provider\":\"p\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n" +
		"data: {\"id\":\"gen-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"x\",\"provider\":\"p\",\"error\":{\"code\":502,\"message\":\"Provider disconnected\"},\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"error\"}]}\n\n"},
	{"key-late-string", "data: {\"id\": \"x\", \"error\" :\t\"boom\"}\n\n"},
	{"key-after-nested", "data: {\"a\":{\"b\":[1,{\"c\":\"}\"}]},\"error\":{\"code\":1}}\n\n"},
	// An event's JSON over several data lines, joined with line feeds.
	{"multiline", "data: {\"id\":\"c\",\"choices\":[]}\n\ndata: {\"id\":\"c\",\ndata: \"error\":{\"message\":\"x\"}}\n\n"},
	{"multiline-colon", "event: x\r\ndata: {\"error\"\r\ndata:\r\ndata: :\r\ndata:  {\"m\":1}}\r\n\r\n"},
	// Compact JSON arrays on one line (Gemini without alt=sse).
	{"array-compact-first", "[{\"error\":{\"code\":503,\"message\":\"x\",\"status\":\"UNAVAILABLE\"}}]"},
	{"array-compact-later", "[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}]},{\"error\":{\"code\":500,\"message\":\"x\"}}]"},
	// Blank lines before the marker, the last one a lone CR (SSE's line
	// end too), cut anywhere.
	{"event-after-blank-lines", "data: {\"a\":1}\n\r\n\revent: error\ndata: {}\n\n"},
	{"ndjson-key-late", "{\"model\":\"m\",\"done\":false}\n{\"model\":\"m\",\"error\":\"boom\"}\n"},
	// A possible key after others that cannot be one (indexErrorKey goes
	// on past them), and one whose colon or value is on the next data line.
	{"key-after-mirror", "data: {\"x\":\"mirror\",\"error\":{\"m\":1}}\n\n"},
	{"key-after-nested-null", "data: {\"type\":\"response.x\",\"response\":{\"error\":null},\"error\":{\"code\":1}}\n\n"},
	{"event-after-null-event", "data: {\"response\":{\"error\":null}}\n\ndata: {\"id\":1,\"error\":\"x\"}\n\n"},
	{"multiline-value", "data: {\"id\":1,\"error\":\ndata: {\"m\":1}}\n\n"},
	// Long texts (searched with textEnd past textRun bytes) with escapes
	// on either side of its window, then the key.
	{"long-text-then-key", "data: {\"text\":\"" + longText + "\",\"error\":{\"m\":1}}\n\n"},
	{"long-text-body", "[{\"text\":\"" + longText + "\"},\n{\"error\":\"x\"}]"},
	{"multiline-colon-crlf", "data: {\"id\":1,\"error\" \r\n: comment\r\ndata: : \"x\"}\r\n\r\n"},
}

// Normal streams that mention errors in their content or carry
// "error":null: no error event.
var streamNoErrorCases = []struct {
	name, stream string
}{
	{"content-error", "data: {\"choices\":[{\"delta\":{\"content\":\"error\"}}]}\n\n"},
	// A stored fine-tuning job's "error":{} (with white space too).
	{"error-empty-object", `{"object":"fine_tuning.job","status":"succeeded","error":{}}`},
	{"error-empty-object-spaced", "data: {\"id\":\"x\",\"error\":{ \n }}\n\n"},
	{"text-error", "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"error\"}}\n\n"},
	{"text-looks-like-event", "data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"\\nevent: error\\ndata: {\\\"error\\\":{},\\\"type\\\":\\\"error\\\"}\"}}\n\n"},
	{"type-error-nested", "data: {\"type\":\"content_block_start\",\"content_block\":{\"type\":\"error\"}}\n\n"},
	{"error-key-nested", "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{\"error\":\"x\"}}}]}}]}\n\n"},
	{"error-key-not-first", "data: {\"id\":\"c\",\"error\":null}\n\n"},
	{"responses-error-null", "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"error\":null}}\n\n"},
	{"field-errors", "errors: {}\n\nerror_x: 1\n\nerr: {}\n\n"},
	// Text bodies whose line begins "error:" (a build log, a transcript).
	{"text-body-error-line", "Build log follows:\nerror: the disk was full\n"},
	{"text-body-error-first", "error: not an event\n"},
	{"event-errors", "event: errors\ndata: {\"type\":\"errors\"}\n\nevent: content_error\ndata: {\"type\":\"x_error\"}\n\n"},
	{"type-response-other", "event: response.failed_x\ndata: {\"type\":\"response.failedx\"}\n\ndata: {\"type\":\"response.completed\"}\n\n"},
	{"data-error-string", "data: \"error\"\n\ndata: error\n\n"},
	{"gemini-array-nested", "[{\n  \"candidates\": [\n    {\n      \"content\": {\"parts\": [{\"functionCall\": {\"name\": \"f\", \"args\": {\"list\": [{\"error\": 1}]}}}]}\n    }\n  ]\n}\n]"},
	{"ollama-ndjson-content", "{\"model\":\"llama3\",\"message\":{\"role\":\"assistant\",\"content\":\"error\"},\"done\":false}\n{\"model\":\"llama3\",\"message\":{\"error\":1},\"done\":true}\n"},
	{"json-body-text", "{\"choices\":[{\"message\":{\"content\":\"error\"}}],\"error\":null}"},
	{"content-error-key-text", "data: {\"choices\":[{\"delta\":{\"content\":\"\\\"error\\\": {\"}}]}\n\n"},
	{"content-ends-error", "data: {\"choices\":[{\"delta\":{\"content\":\"mirror\"}}],\"x\":\"terror\"}\n\n"},
	{"delta-error", "data: {\"choices\":[{\"index\":0,\"delta\":{\"error\":{\"message\":\"x\"}}}]}\n\n"},
	{"error-empty-null-false", "data: {\"error\":null}\n\ndata: {\"id\":1,\"error\":\"\"}\n\ndata: {\"error\": false,\"x\":{\"error\":1}}\n\n"},
	{"error-value-array-number", "data: {\"error\":[],\"e\":1}\n\ndata: {\"error\":0}\n\n"},
	{"multiline-null", "data: {\"id\":\"c\",\ndata: \"error\":\ndata: null}\n\n"},
	{"multiline-in-string", "data: {\"text\":\"a\ndata: \\\"error\\\":{}}\n\n"},
	{"key-escaped", "data: {\"\\\"error\":{},\"err\\u006fr\":{}}\n\n"},
	{"done", "data: {\"choices\":[]}\n\ndata: [DONE]\n\n"},
	{"array-compact-nested", "[{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"args\":{\"error\":{}}}}]}}],\"error\":null},{\"x\":[{\"error\":\"y\"}]}]"},
	{"array-of-arrays", "[[{\"error\":{}}]]"},
	{"event-data-not-json-object", "data: [{\"error\":{}}]\n\n"},
	// Possible keys that are none: Responses' nested "error":null, a key
	// whose value is no object or string, text that ends in "rror".
	{"error-null-and-text", "data: {\"response\":{\"error\":null,\"x\":\"terror\"},\"error\" : null}\n\ndata: {\"a\":\"\\\"error\\\"\"}\n\n"},
	{"long-text-escaped-key", "data: {\"text\":\"" + longText + "\\\",\\\"error\\\":{}," + longText + "\"}\n\n"},
	{"long-text-escaped-key-body", "[{\"text\":\"" + longText + "\\\",\\\"error\\\":{}," + longText + "\"}]"},
	{"long-text-line-feed-body", "[{\"text\":\"" + strings.Repeat("a", 40) + "\n\",\"error\":{}}]"},
	{"error-key-nested-late", "data: {\"response\":{\"error\":null},\"output\":[{\"error\":{\"m\":1}}]}\n\n"},
}

// longText is the text of a long JSON string, with escapes (a quote among
// them) before, at and past the bytes textEnd searches at a time.
var longText = strings.Repeat("a", 40) + `\"` + strings.Repeat("b", 250) + `\\` + strings.Repeat("c", 300) + `\n\"`

// scanPieces runs a live scanner over the stream cut at the given places.
func scanPieces(stream string, cuts ...int) bool {
	var s StreamErrorScanner
	s.Start(false, 200)
	prev := 0
	found := false
	for _, c := range append(cuts, len(stream)) {
		if s.Scan([]byte(stream[prev:c])) {
			if found {
				panic("reported twice")
			}
			found = true
		}
		prev = c
	}
	return found && s.Found()
}

// TestStreamError: every provider's in-stream error is found, however the
// reads cut it (at every byte, and one byte a read), and nothing is found
// in normal content that says "error".
func TestStreamError(t *testing.T) {
	check := func(t *testing.T, stream string, want bool) {
		t.Helper()
		if got := scanPieces(stream); got != want {
			t.Fatalf("whole: %v, want %v", got, want)
		}
		for i := 1; i < len(stream); i++ {
			if got := scanPieces(stream, i); got != want {
				t.Fatalf("cut at %d (%q | %q): %v, want %v", i, stream[:i], stream[i:], got, want)
			}
		}
		for i := 1; i+1 < len(stream); i += 3 {
			if got := scanPieces(stream, i, i+1, min(i+40, len(stream))); got != want {
				t.Fatalf("cut at %d, %d, %d: %v, want %v", i, i+1, i+40, got, want)
			}
		}
		bytewise := make([]int, 0, len(stream))
		for i := 1; i < len(stream); i++ {
			bytewise = append(bytewise, i)
		}
		if got := scanPieces(stream, bytewise...); got != want {
			t.Fatalf("one byte a read: %v, want %v", got, want)
		}
		data := []byte(stream)
		ends := []uint32{uint32(len(data) / 2), uint32(len(data))}
		if got := HasStreamError(false, 200, data, ends); got != want {
			t.Fatalf("HasStreamError: %v, want %v", got, want)
		}
	}
	for _, tt := range streamErrorCases {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.stream, true) })
	}
	for _, tt := range streamNoErrorCases {
		t.Run("none/"+tt.name, func(t *testing.T) { check(t, tt.stream, false) })
	}
}

// TestStreamErrorRecorded: none of the recorded real streams has an error
// event; each of them with an error event of its API appended has.
func TestStreamErrorRecorded(t *testing.T) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".sse") {
			continue
		}
		r := loadStream(t, e.Name())
		if HasStreamError(false, 200, r.data, r.ends) {
			t.Errorf("%s: error event found in a normal stream", e.Name())
		}
		tail := "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n"
		if strings.HasPrefix(e.Name(), "gemini") || strings.HasPrefix(e.Name(), "openai") || strings.HasPrefix(e.Name(), "vllm") || strings.HasPrefix(e.Name(), "ollama") {
			tail = "data: {\"error\":{\"code\":503,\"message\":\"overloaded\"}}\r\n\r\n"
		}
		data := append(append([]byte(nil), r.data...), tail...)
		ends := append(append([]uint32(nil), r.ends...), uint32(len(data)))
		if !HasStreamError(false, 200, data, ends) {
			t.Errorf("%s: appended error event not found", e.Name())
		}
	}
}

// TestStreamErrorOff: an error status (its body is the error, typed
// upstream_status) and a raw response are not scanned.
func TestStreamErrorOff(t *testing.T) {
	b := []byte("data: {\"error\":{\"code\":1}}\n\n")
	ends := []uint32{uint32(len(b))}
	if HasStreamError(false, 500, b, ends) || HasStreamError(true, 200, b, ends) {
		t.Fatal("scanned")
	}
	// A redirect's page may hold {"error":...}: no error inside a stream.
	body := []byte(`{"error":{"message":"moved"}}`)
	if HasStreamError(false, 302, body, []uint32{uint32(len(body))}) || HasStreamError(false, 101, b, ends) {
		t.Fatal("a 3xx or 1xx answer scanned")
	}
	if !HasStreamError(false, 200, b, ends) {
		t.Fatal("not found")
	}
}
