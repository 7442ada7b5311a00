package upstream

import (
	"bufio"
	"io"
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// BenchmarkStreamChunk measures the per-chunk relay path: one op is one
// upstream read relayed (stamp, capture, write and flush).
func BenchmarkStreamChunk(b *testing.B) {
	for _, bc := range []struct {
		name    string
		kind    record.Kind
		capture bool
	}{
		{"sse-capture", record.KindSSE, true},
		{"sse-meta", record.KindSSE, false},
		{"raw", record.KindRaw, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, cr := testStream(bc.kind, bc.capture, sseChunk)
			w := flushWriter{bufio.NewWriter(io.Discard)}
			const perStream = 1000
			b.SetBytes(int64(len(sseChunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += perStream {
				resetStream(s)
				cr.left = min(perStream, b.N-done)
				if _, err := s.WriteTo(w); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkTokenScanner(b *testing.B) {
	role := []byte(`data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n")
	b.SetBytes(int64(len(role)))
	b.ReportAllocs()
	var s tokenScanner
	for i := 0; i < b.N; i++ {
		s.reset()
		if s.scan(role) {
			b.Fatal("role frame counted as a token")
		}
	}
}
