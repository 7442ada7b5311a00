package handlers

import (
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestChargedTokens: the usage found when the stream carried it whole; an
// estimate from the bytes for an LLM stream cut before its usage (or with
// none, or with Anthropic's placeholder of 1 output token); nothing made
// up for audio, refusals or the upstream's own errors.
func TestChargedTokens(t *testing.T) {
	for _, tc := range []struct {
		name      string
		kind      record.Kind
		status    int
		ttfb      time.Duration
		errType   string
		in, out   int64
		bin, bout int64
		want      int64
	}{
		{"whole stream, usage found", record.KindSSE, 200, time.Millisecond, "", 10, 20, 400, 64000, 30},
		{"cut before the usage", record.KindSSE, 200, time.Millisecond, record.ErrClientClosed, -1, -1, 400, 12800, 100 + 100},
		{"no usage in a whole stream", record.KindSSE, 200, time.Millisecond, "", -1, -1, 40, 1280, 10 + 10},
		{"anthropic cut: placeholder output", record.KindSSE, 200, time.Millisecond, record.ErrUpstreamReset, 472, 1, 4000, 12800, 472 + 100},
		{"cut, more output found than estimated", record.KindSSE, 200, time.Millisecond, record.ErrClientClosed, 5, 900, 40, 1280, 5 + 900},
		{"audio", record.KindRaw, 200, time.Millisecond, "", -1, -1, 400, 5 << 20, 0},
		{"refused before the upstream", record.KindSSE, 429, record.None, record.ErrRateLimited, -1, -1, 400, 90, 0},
		{"upstream error", record.KindSSE, 500, time.Millisecond, record.ErrUpstreamStatus, -1, -1, 400, 1280, 0},
		{"left before the head", record.KindSSE, 499, record.None, record.ErrClientClosed, -1, -1, 400, 0, 0},
	} {
		rec := &record.Record{Kind: tc.kind, Status: tc.status, TTFB: tc.ttfb, ErrorType: tc.errType,
			TokensIn: tc.in, TokensOut: tc.out, BytesIn: tc.bin, BytesOut: tc.bout}
		if got := chargedTokens(rec); got != tc.want {
			t.Errorf("%s: charged %d, want %d", tc.name, got, tc.want)
		}
	}
}
