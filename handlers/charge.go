package handlers

import "github.com/stream-relay/stream-relay/record"

// Token budgets are charged from the usage a response carries, and OpenAI
// sends it with a stream's last event: a client that left before it (or an
// upstream that broke off) left a stream with no usage, charged nothing, so
// a tenant could spend past its budget without end by leaving early. Such a
// stream is charged an estimate instead, from the bytes that went each way.

// promptBytesPerToken estimates the tokens of a request body: about four
// bytes of text a token, the JSON around the messages counted as text (a
// little over what the provider counts).
const promptBytesPerToken = 4

// streamBytesPerToken estimates the tokens of a response from its bytes: an
// SSE event of OpenAI chat or Responses carries one token in about 150-230
// bytes, an Anthropic text delta a few tokens in about 120; Gemini sends its
// usage with every chunk, so its streams are seldom estimated.
const streamBytesPerToken = 128

// chargedTokens returns the tokens a finished record charges to its
// tenant's token budget: its usage when the response carried it whole, else
// an estimate for an answer the upstream began (a 2xx head came), and 0 for
// requests the upstream refused or never saw.
func chargedTokens(rec *record.Record) int64 {
	complete := rec.ErrorType == ""
	if rec.TokensIn >= 0 && complete {
		return rec.TokensIn + max(rec.TokensOut, 0)
	}
	if rec.Kind != record.KindSSE || rec.TTFB < 0 || rec.Status < 200 || rec.Status >= 300 {
		// Not an LLM route (audio bytes are no tokens; a WebSocket
		// session is charged from its own events), no answer began (a
		// refusal, or the upstream failed before its head), or the
		// upstream's own error: what usage came is all.
		return max(rec.TokensIn, 0) + max(rec.TokensOut, 0)
	}
	in := rec.TokensIn
	if in < 0 {
		in = rec.BytesIn / promptBytesPerToken
	}
	out := rec.TokensOut
	if est := rec.BytesOut / streamBytesPerToken; !complete && est > out {
		// Cut: a count found so far (Anthropic's placeholder of 1 in
		// message_start) is not the stream's.
		out = est
	} else if out < 0 {
		out = est
	}
	return in + out
}
