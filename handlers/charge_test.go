package handlers

import (
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestChargedTokens: the usage found when the response carried it, even
// when the stream was cut after it; an estimate from the bytes for an LLM
// answer cut before its usage (SSE: 128 bytes a token; one JSON body: 4),
// with none at all, or with Anthropic's placeholder output count (on a path
// that names no API too: Vertex); nothing made up for audio, refusals, the
// upstream's own errors, or calls that generate nothing (a model list,
// embeddings, a token count, an upload to transcribe, a GET).
func TestChargedTokens(t *testing.T) {
	const sse, json = `{"content-type":"text/event-stream"}`, `{"content-type":"application/json"}`
	const ndjson = `{"content-type":"application/x-ndjson"}`
	for _, tc := range []struct {
		name      string
		kind      record.Kind
		path      string
		status    int
		ttfb      time.Duration
		errType   string
		in, out   int64
		bin, bout int64
		headers   string
		want      int64
	}{
		{"whole stream, usage found", record.KindSSE, "/v1/chat/completions", 200, time.Millisecond, "", 10, 20, 400, 64000, sse, 30},
		{"cut after the usage", record.KindSSE, "/v1/chat/completions", 200, time.Millisecond, record.ErrClientClosed, 12, 300, 400, 88000, sse, 312},
		{"cut before the usage", record.KindSSE, "/v1/chat/completions", 200, time.Millisecond, record.ErrClientClosed, -1, -1, 400, 12800, sse, 100 + 100},
		{"json answer cut before its usage", record.KindSSE, "/v1/chat/completions", 200, time.Millisecond, record.ErrClientClosed, -1, -1, 40, 40000, json, 10 + 10000},
		{"no usage in a whole stream", record.KindSSE, "/v1/chat/completions", 200, time.Millisecond, "", -1, -1, 40, 1280, sse, 10 + 10},
		{"anthropic cut: placeholder output", record.KindSSE, "/v1/messages", 200, time.Millisecond, record.ErrUpstreamReset, 472, 1, 4000, 12800, sse, 472 + 100},
		{"anthropic whole", record.KindSSE, "/v1/messages", 200, time.Millisecond, "", 472, 12, 4000, 12800, sse, 484},
		{"anthropic cut, more output found than estimated", record.KindSSE, "/v1/messages", 200, time.Millisecond, record.ErrClientClosed, 5, 900, 40, 1280, sse, 5 + 900},
		{"audio", record.KindRaw, "/v1/audio/speech", 200, time.Millisecond, "", -1, -1, 400, 5 << 20, "{}", 0},
		{"refused before the upstream", record.KindSSE, "/v1/chat/completions", 429, record.None, record.ErrRateLimited, -1, -1, 400, 90, json, 0},
		{"upstream error", record.KindSSE, "/v1/chat/completions", 500, time.Millisecond, record.ErrUpstreamStatus, -1, -1, 400, 1280, json, 0},
		{"left before the head", record.KindSSE, "/v1/chat/completions", 499, record.None, record.ErrClientClosed, -1, -1, 400, 0, "", 0},
		{"model list", record.KindSSE, "/v1/models", 200, time.Millisecond, "", -1, -1, 0, 8818, json, 0},
		{"embeddings", record.KindSSE, "/v1/embeddings", 200, time.Millisecond, "", -1, -1, 400, 20000, json, 0},
		{"token count", record.KindSSE, "/v1/messages/count_tokens", 200, time.Millisecond, "", -1, -1, 40000, 30, json, 0},
		{"transcription upload", record.KindSSE, "/v1/audio/transcriptions", 200, time.Millisecond, "", -1, -1, 2 << 20, 400, json, 0},
		{"stored completions listed", record.KindSSE, "/v1/chat/completions", 200, time.Millisecond, "", -1, -1, 0, 40000, json, 0},
		{"vertex anthropic cut: placeholder output", record.KindSSE, "/v1/projects/p/locations/l/publishers/anthropic/models/m:streamRawPredict", 200, time.Millisecond, record.ErrClientClosed, 1125, 1, 400, 21046, sse, 1125 + 164},
		{"vertex mistral cut after its usage", record.KindSSE, "/v1/projects/p/locations/l/publishers/mistralai/models/m:streamRawPredict", 200, time.Millisecond, record.ErrClientClosed, 12, 300, 400, 88000, sse, 312},
		{"responses stream resumed, cut", record.KindSSE, "/v1/responses/resp_abc123", 200, time.Millisecond, record.ErrClientClosed, -1, -1, 0, 12800, sse, 100},
		{"response retrieved, no usage yet", record.KindSSE, "/v1/responses/resp_abc123", 200, time.Millisecond, "", -1, -1, 0, 4000, json, 0},
		{"vertex anthropic cut before message_start", record.KindSSE, "/v1/projects/p/locations/l/publishers/anthropic/models/m:streamRawPredict", 200, time.Millisecond, record.ErrClientClosed, -1, -1, 400, 0, sse, 100},
		{"ollama whole", record.KindSSE, "/api/chat", 200, time.Millisecond, "", 18, 47, 400, 6000, ndjson, 65},
		{"ollama cut before its counts", record.KindSSE, "/api/generate", 200, time.Millisecond, record.ErrClientClosed, -1, -1, 400, 12800, ndjson, 100 + 100},
		{"ollama model list", record.KindSSE, "/api/tags", 200, time.Millisecond, "", -1, -1, 0, 8000, json, 0},
	} {
		method := "POST"
		if strings.HasSuffix(tc.name, "model list") || tc.name == "stored completions listed" || strings.HasPrefix(tc.name, "respons") {
			method = "GET"
		}
		rec := &record.Record{Kind: tc.kind, Method: method, Path: tc.path, Status: tc.status, TTFB: tc.ttfb, ErrorType: tc.errType,
			TokensIn: tc.in, TokensOut: tc.out, BytesIn: tc.bin, BytesOut: tc.bout, ResponseHeaders: []byte(tc.headers)}
		if got := chargedTokens(rec); got != tc.want {
			t.Errorf("%s: charged %d, want %d", tc.name, got, tc.want)
		}
	}
}
