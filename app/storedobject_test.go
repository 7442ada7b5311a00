package app

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestStoredObjectsChargeNothing: answers that show a stored object's usage
// (a cancelled batch's, a stored chat completion's whose metadata a POST
// updated) count 0 tokens, an Assistants thread's new message (a POST to
// .../messages, no generation) is charged no estimate, and an embeddings
// answer's input-only usage counts: a 300-token budget outlasts them all.
// The cancel charged the batch's 2,000 tokens (a completed batch is charged
// nothing), the update the completion's again, the thread message an
// Anthropic-style estimate of ~650, and embeddings nothing (NULL).
func TestStoredObjectsChargeNothing(t *testing.T) {
	limits, _ := withLimits("", 100, 100)
	r := relayTo(t, "objects", "/objs", "", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		p := strings.TrimPrefix(r.URL.Path, "/objs")
		switch {
		case strings.HasPrefix(p, "/v1/batches/"):
			_, _ = w.Write([]byte(`{"id":"batch_1","object":"batch","status":"cancelling","usage":{"input_tokens":1500,"output_tokens":500,"total_tokens":2000}}`))
		case strings.HasPrefix(p, "/v1/chat/completions/"):
			_, _ = w.Write([]byte(`{"id":"chatcmpl-1","object":"chat.completion","metadata":{"k":"v"},"choices":[{"message":{"content":"Hey"}}],"usage":{"prompt_tokens":900,"completion_tokens":100}}`))
		case strings.HasPrefix(p, "/v1/threads/"):
			_, _ = w.Write([]byte(`{"id":"msg_1","object":"thread.message","role":"user","content":[{"type":"text","text":{"value":"` + strings.Repeat("words ", 350) + `"}}]}`))
		case p == "/v1/embeddings":
			_, _ = w.Write([]byte(`{"object":"list","data":[{"embedding":[0.1,0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8,"total_tokens":8}}`))
		default:
			http.NotFound(w, r)
		}
	}, func(c *Config) {
		limits(c)
		c.RateLimit.TokensPerMinute = 300
	})
	for i, tc := range []struct {
		path    string
		body    string
		in, out int64 // -1: NULL
	}{
		{"/objs/v1/batches/batch_1/cancel", "", 0, 0},
		{"/objs/v1/chat/completions/chatcmpl-1", `{"metadata":{"k":"v"}}`, 0, 0},
		{"/objs/v1/threads/thread_1/messages", `{"role":"user","content":"` + strings.Repeat("hello ", 60) + `"}`, -1, -1},
		{"/objs/v1/embeddings", `{"model":"text-embedding-3-small","input":"hello"}`, 8, 0},
		{"/objs/v1/embeddings", `{"model":"text-embedding-3-small","input":"hello"}`, 8, 0},
		// A generation path with a trailing slash is no stored object: its
		// usage counts (a substring test made it 0).
		{"/objs/v1/chat/completions/", `{"model":"m"}`, 900, 100},
	} {
		resp, body := r.request(t, "POST", tc.path, tc.body)
		if resp.StatusCode != 200 {
			t.Fatalf("request %d, POST %s: status %d %.200s (the budget spent by the ones before)", i, tc.path, resp.StatusCode, body)
		}
		rw := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if rw.TokensIn != tc.in || rw.TokensOut != tc.out {
			t.Errorf("request %d, POST %s: row tokens %d/%d, want %d/%d", i, tc.path, rw.TokensIn, rw.TokensOut, tc.in, tc.out)
		}
	}
}
