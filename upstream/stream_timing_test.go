package upstream

import (
	"bufio"
	"io"
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// BenchmarkStreamChunk measures the relay path per upstream chunk: decode
// the chunked framing, stamp, capture, write and flush. One op is one event
// of a 1,000-event stream.
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
			const perStream = 1000
			src := newChunkedSource(sseChunk, perStream)
			s := testStream(bc.kind, bc.capture, src)
			w := flushWriter{bufio.NewWriter(io.Discard)}
			b.SetBytes(int64(len(sseChunk)))
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; done += perStream {
				resetStream(s, src)
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
