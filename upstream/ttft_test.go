package upstream

import (
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// TestTokenScanner: the stream's clock picks its rules from the request
// path, and an error status, a raw route or a binary answer (audio on a
// route of kind sse: its first byte, as on a raw route) decide as before (the rules
// themselves are tested in package usage, on recorded streams).
func TestTokenScanner(t *testing.T) {
	responsesDone := `data: {"type":"response.output_text.done","text":"Hi"}` + "\n\n"
	tests := []struct {
		name   string
		path   string
		kind   record.Kind
		status int
		chunks []string
		want   int    // index of the chunk that completes the first token; -1 none
		hdr    string // the captured response headers
	}{
		{"openai role frame then content", "/v1/chat/completions", record.KindSSE, 200, []string{
			`data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n",
			`data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}` + "\n\n",
		}, 1, ""},
		{"responses done is no token", "/v1/responses", record.KindSSE, 200, []string{responsesDone,
			`data: {"type":"response.output_text.delta","delta":"Hi"}` + "\n\n"}, 1, ""},
		{"responses non-streamed body", "/v1/responses", record.KindSSE, 200, []string{
			`{"id":"resp_1","object":"response","status":"completed","output":[{"type":"message","content":[`,
			`{"type":"output_text","annotations":[],"text":"Hi"}]}],"text":{"format":{"type":"text"}}}`,
		}, 1, ""},
		{"generic path takes done text", "/custom", record.KindSSE, 200, []string{responsesDone}, 0, ""},
		{"responses delta split", "/v1/responses", record.KindSSE, 200, []string{`data: {"type":"response.output_text.delta","del`, `ta":"x"}`}, 1, ""},
		{"gemini", "/v1beta/models/g:streamGenerateContent", record.KindSSE, 200, []string{
			`data: {"candidates":[{"content":{"role":"model"}}],"usageMetadata":{"promptTokenCount":3}}` + "\r\n\r\n",
			`data: {"candidates":[{"content":{"parts":[{"text":"A"}],"role":"model"}}]}` + "\r\n\r\n",
		}, 1, ""},
		{"error status", "/v1/chat/completions", record.KindSSE, 429, []string{`{"error":{"message":"slow down","content":"x"}}`}, -1, ""},
		{"raw", "/v1/audio/speech", record.KindRaw, 200, []string{"\x00\x01"}, 0, ""},
		{"audio on an sse route", "/v1/audio/speech", record.KindSSE, 200, []string{"\xff\xfb\x90\x00"}, 0, `{"content-type":"audio/mpeg"}`},
		{"octet-stream on an sse route", "/v1/x", record.KindSSE, 200, []string{"\x00"}, 0, `{"date":"x","content-type":"Application/Octet-Stream"}`},
		{"json on an sse route", "/v1/x", record.KindSSE, 200, []string{`{"a":1}`}, -1, `{"content-type":"application/json"}`},
		{"audio error status", "/v1/audio/speech", record.KindSSE, 500, []string{"\x00"}, -1, `{"content-type":"audio/mpeg"}`},
		{"tiny reads", "/v1/chat/completions", record.KindSSE, 200, strings.Split(`data: {"delta":{"content":"yo"}}`, ""), len(`data: {"delta":{"content":"y`) - 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &record.Record{Path: tt.path, Status: tt.status, ResponseHeaders: []byte(tt.hdr)}
			var s tokenScanner
			got := -1
			for i, c := range tt.chunks {
				s.start(rec, tt.kind)
				if s.scan([]byte(c)) {
					got = i
					break
				}
			}
			if got != tt.want {
				t.Errorf("token found at chunk %d, want %d", got, tt.want)
			}
		})
	}
}
