package usage

import "testing"

// BenchmarkStreamErrorScan: the error watch of one relayed read of a
// typical OpenAI chunk (what the relay adds per read of an sse response).
func BenchmarkStreamErrorScan(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}]}` + "\n\n")
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	var s StreamErrorScanner
	s.Start(false, 200)
	for b.Loop() {
		if s.Scan(chunk) {
			b.Fatal("error found")
		}
	}
}

// BenchmarkStreamErrorRecorded: the error watch over each recorded stream,
// read by read.
func BenchmarkStreamErrorRecorded(b *testing.B) {
	for _, f := range []string{"openai_chat.sse", "anthropic.sse", "responses.sse", "gemini_thinking.sse"} {
		b.Run(f, func(b *testing.B) {
			r := loadStream(b, f)
			b.SetBytes(int64(len(r.data)))
			b.ReportAllocs()
			for b.Loop() {
				if HasStreamError(false, 200, r.data, r.ends) {
					b.Fatal("error found")
				}
			}
		})
	}
}
