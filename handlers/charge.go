package handlers

import (
	"bytes"
	"strings"

	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/usage"
)

// Token budgets are charged from the usage a response carries, and OpenAI
// sends it with a stream's last event: a client that left before it (or an
// upstream that broke off) left a stream with no usage, charged nothing, so
// a tenant could spend past its budget without end by leaving early. Such a
// stream is charged an estimate instead, from the bytes that went each way.

// promptBytesPerToken estimates the tokens of a request body: about four
// bytes of text a token, the JSON around the messages counted as text (a
// little over what the provider counts).
const promptBytesPerToken = 4

// streamBytesPerToken estimates the tokens of an SSE response from its
// bytes: an event of OpenAI chat or Responses carries one token in about
// 150-230 bytes, an Anthropic text delta a few tokens in about 120.
// jsonBytesPerToken is for a non-streamed answer, one JSON body whose usage
// comes at its end: its text is most of its bytes.
const (
	streamBytesPerToken = 128
	jsonBytesPerToken   = 4
)

// chargedTokens returns the tokens a finished record charges to its
// tenant's token budget: the usage the response carried when it came (OpenAI
// chat and Responses send it once, at the end; Gemini a running count with
// every chunk), else an estimate for a generation the upstream began (a 2xx
// head came to a POST on a generating path: generates), and what usage
// came, if any, for everything else (audio, WebSocket sessions, refusals,
// the upstream's own errors, and calls that generate nothing: a model list,
// embeddings, a token count, a transcription's upload, which an estimate
// from their bytes charged by the megabyte). A read's usage was set to 0
// before (retrievals.go) unless it is the first of a background response.
func chargedTokens(rec *record.Record) int64 {
	found := max(rec.TokensIn, 0) + max(rec.TokensOut, 0)
	if rec.Kind != record.KindSSE || rec.TTFB < 0 || rec.Status < 200 || rec.Status >= 300 || !generates(rec) {
		return found
	}
	cut := rec.ErrorType != ""
	api := usage.APIForPath(rec.Path)
	// Anthropic's message_start carries a placeholder output count (usually
	// 1) until message_delta, which a cut stream may not have had; so may
	// a path that names no API (Anthropic on Vertex: :streamRawPredict),
	// where an output count above 1 is another model's real one (Mistral on
	// Vertex sends OpenAI's usage, at the end).
	placeholder := cut && (api == usage.Anthropic || api == usage.Generic && rec.TokensOut <= 1)
	switch {
	case rec.TokensIn >= 0 && !placeholder:
		return found
	case rec.TokensIn >= 0:
		return rec.TokensIn + max(rec.TokensOut, outEstimate(rec))
	}
	return rec.BytesIn/promptBytesPerToken + outEstimate(rec)
}

// generates reports whether rec is a request for a generation, which the
// estimate may charge: a POST to a path of an API with its own usage rules
// (usage.APIForPath: chat and legacy completions, Responses, Anthropic
// messages, Gemini generateContent, Ollama's /api/chat and /api/generate) or to Vertex AI's raw predictions
// (Anthropic's models there), or a GET that resumes a Responses stream
// (GET /v1/responses/{id}?stream=true: a background response's output,
// streamed).
func generates(rec *record.Record) bool {
	p := rec.Path
	switch rec.Method {
	case "POST":
		return usage.APIForPath(p) != usage.Generic || strings.HasSuffix(p, ":rawPredict") || strings.HasSuffix(p, ":streamRawPredict")
	case "GET":
		return usage.APIForPath(p) == usage.Responses && isSSE(rec)
	}
	return false
}

// isSSE reports whether rec's answer is an SSE stream.
func isSSE(rec *record.Record) bool {
	return usage.EventStream(rec.ResponseHeaders)
}

// outEstimate is the output tokens estimated from the response's bytes: a
// stream of events (SSE, or Ollama's NDJSON lines of about 120 bytes a
// token) by the event, a JSON body by its text.
func outEstimate(rec *record.Record) int64 {
	if isSSE(rec) || bytes.Contains(rec.ResponseHeaders, []byte("application/x-ndjson")) {
		return rec.BytesOut / streamBytesPerToken
	}
	return rec.BytesOut / jsonBytesPerToken
}
