package handlers

import (
	"bytes"

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
// every chunk), else an estimate for an LLM answer the upstream began (a
// 2xx head came), and what usage came, if any, for everything else (audio,
// WebSocket sessions, refusals, the upstream's own errors).
func chargedTokens(rec *record.Record) int64 {
	found := max(rec.TokensIn, 0) + max(rec.TokensOut, 0)
	if rec.Kind != record.KindSSE || rec.TTFB < 0 || rec.Status < 200 || rec.Status >= 300 {
		return found
	}
	cut := rec.ErrorType != ""
	switch {
	case rec.TokensIn >= 0 && !(cut && usage.APIForPath(rec.Path) == usage.Anthropic):
		return found
	case rec.TokensIn >= 0:
		// Anthropic cut: message_start's output count is a placeholder
		// (usually 1) until message_delta, which may not have come.
		return rec.TokensIn + max(rec.TokensOut, outEstimate(rec))
	}
	return rec.BytesIn/promptBytesPerToken + outEstimate(rec)
}

// outEstimate is the output tokens estimated from the response's bytes.
func outEstimate(rec *record.Record) int64 {
	if bytes.Contains(rec.ResponseHeaders, []byte("text/event-stream")) {
		return rec.BytesOut / streamBytesPerToken
	}
	return rec.BytesOut / jsonBytesPerToken
}
