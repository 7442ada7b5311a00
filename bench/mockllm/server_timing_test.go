package mockllm_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

// benchmarkStream measures one whole streamed response over loopback, client
// included, as the relay's benchmarks will see the mock.
func benchmarkStream(b *testing.B, path, body string, kv ...string) {
	_, base, c := start(b, mockllm.Options{})
	req, err := http.NewRequest(http.MethodPost, base+path, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		req.Header.Set(kv[i], kv[i+1])
	}
	var n int64
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		resp, err := c.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d, err %v", resp.StatusCode, err)
		}
	}
	b.SetBytes(n)
}

func BenchmarkChatStream(b *testing.B) {
	benchmarkStream(b, "/v1/chat/completions",
		`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`,
		mockllm.HeaderChunks, "20")
}

func BenchmarkMessagesStream(b *testing.B) {
	benchmarkStream(b, "/v1/messages",
		`{"model":"claude","stream":true,"max_tokens":64,"messages":[{"role":"user","content":"hi"}]}`,
		mockllm.HeaderChunks, "20")
}

func BenchmarkSpeech(b *testing.B) {
	benchmarkStream(b, "/v1/audio/speech", `{"input":"hi","voice":"alloy"}`)
}
