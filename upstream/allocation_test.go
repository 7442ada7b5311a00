//go:build !race

package upstream

import (
	"bufio"
	"io"
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// TestStreamCopyAllocatesNothing: relaying a stream (decode the upstream's
// chunked framing, stamp, capture, scan for the first token, write and
// flush) allocates nothing once the pooled record's buffers have grown.
func TestStreamCopyAllocatesNothing(t *testing.T) {
	tests := []struct {
		name    string
		kind    record.Kind
		capture bool
	}{
		{"sse full capture", record.KindSSE, true},
		{"sse meta", record.KindSSE, false},
		{"raw", record.KindRaw, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newChunkedSource(sseChunk, 500)
			s := testStream(tt.kind, tt.capture, src)
			w := flushWriter{bufio.NewWriter(io.Discard)}
			run := func() {
				resetStream(s, src)
				if _, err := s.WriteTo(w); err != nil {
					t.Fatal(err)
				}
			}
			run() // grow the record's buffers once, as a pooled record has
			if n := testing.AllocsPerRun(20, run); n != 0 {
				t.Errorf("%v allocations per 500-event stream, want 0", n)
			}
			if s.rec.BytesOut != int64(500*len(sseChunk)) || s.rec.TTFT == record.None {
				t.Errorf("bytes %d ttft %v", s.rec.BytesOut, s.rec.TTFT)
			}
		})
	}
}
