package app

import (
	"io"
	"net/http"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

// TestTokenBudgetCutStreams: streams whose usage never arrives (the client
// leaves before the last event, where OpenAI sends it) are charged an
// estimate, so a tenant cannot spend past its token budget by leaving
// early. Before, such streams were charged nothing: 30 streams of about
// 500 tokens each against a budget of 2,000 were all admitted.
func TestTokenBudgetCutStreams(t *testing.T) {
	mutate, _ := withLimits("", 100000, 100000)
	r := startRelayWith(t, "", func(c *Config) {
		mutate(c)
		c.RateLimit.TokensPerMinute = 2000
	})
	hdr := map[string]string{mockllm.HeaderChunks: "3000", mockllm.HeaderDelayMs: "1"}
	const body = `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	admitted := 0
	for i := 0; i < 30; i++ {
		resp := r.post(t, "/v1/chat/completions", body, hdr)
		if resp.StatusCode == http.StatusTooManyRequests {
			readAll(t, resp)
			if admitted < 3 {
				t.Fatalf("refused after %d streams of 64 KiB each, want at least 3 admitted", admitted)
			}
			return
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %d: status %d", i, resp.StatusCode)
		}
		admitted++
		// 64 KiB of events (a few hundred tokens), then leave: the usage
		// would have come with the last event.
		if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		_ = resp.Body.Close()
	}
	t.Fatalf("%d streams cut before their usage all admitted against a budget of 2000 tokens", admitted)
}
