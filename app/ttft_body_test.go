package app

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/record"
)

// TestNonStreamedTTFT: a non-streamed answer (one JSON body) of each API,
// from the mock upstream through the relay, gets its first-token time from
// the read that carries its text, as a stream does from its first content
// event: after the upstream's first byte, which the mock holds back, and
// within the request. An answer with no text (zero tokens) gets none. The
// OpenAI Responses object keeps its text in output[].content[].text, which
// its streamed rules (deltas only) do not count.
func TestNonStreamedTTFT(t *testing.T) {
	r := startRelayWith(t, "", func(c *Config) {
		// A Responses route: the openai route's settings on /v1/responses.
		rc := c.Routes[0]
		rc.Name, rc.Path = "responses", "/v1/responses"
		c.Routes = append(c.Routes, rc)
	})
	const delay = 80 * time.Millisecond
	for _, tt := range []struct{ name, path, object string }{
		{"openai chat", "/v1/chat/completions", `"object":"chat.completion"`},
		{"anthropic", "/v1/messages", `"type":"message"`},
		{"openai responses", "/v1/responses", `"object":"response"`},
	} {
		for _, chunks := range []int{4, 0} {
			t.Run(tt.name+" "+strconv.Itoa(chunks)+" tokens", func(t *testing.T) {
				resp := r.post(t, tt.path, `{"model":"m","input":"hi","messages":[]}`, map[string]string{
					mockllm.HeaderChunks:         strconv.Itoa(chunks),
					mockllm.HeaderFirstByteDelay: strconv.Itoa(int(delay / time.Millisecond)),
				})
				body := readAll(t, resp)
				if resp.StatusCode != 200 || !strings.Contains(body, tt.object) || resp.Header.Get("Content-Type") != "application/json" {
					t.Fatalf("status %d, content-type %q, body %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
				}
				row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
				if row.TokensOut != int64(chunks) || row.TokensIn <= 0 {
					t.Errorf("tokens %d/%d, want out %d", row.TokensIn, row.TokensOut, chunks)
				}
				if chunks == 0 {
					if row.TTFT != record.None {
						t.Errorf("an answer with no text has ttft %v", row.TTFT)
					}
					return
				}
				if row.TTFT == record.None || row.TTFT < row.TTFB || row.TTFB < delay || row.TTFT > row.Duration {
					t.Errorf("ttft %v, ttfb %v, duration %v; want ttfb >= %v <= ttft <= duration", row.TTFT, row.TTFB, row.Duration, delay)
				}
			})
		}
	}
}
