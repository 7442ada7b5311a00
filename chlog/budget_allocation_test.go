//go:build !race

package chlog

import (
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestAdmitAllocs: admission and capture charged against the budget (the
// relay's hot path) allocate nothing once a pooled record's buffers have
// grown.
func TestAdmitAllocs(t *testing.T) {
	w := newWriter(t, Options{SpoolDir: t.TempDir(), FlushInterval: time.Hour, MaxBufferBytes: 64 << 20})
	r := record.Acquire(1 << 20)
	body := []byte(`{"model":"gpt-4o","stream":true}`)
	chunk := make([]byte, 200)
	run := func() {
		r.Capture, r.Truncated, r.TruncatedReason = true, false, ""
		r.RequestBody = r.RequestBody[:0]
		r.Chunks.Data, r.Chunks.Ends, r.Chunks.AtMS = r.Chunks.Data[:0], r.Chunks.Ends[:0], r.Chunks.AtMS[:0]
		if !w.Admit(r) {
			t.Fatal("refused with an empty budget")
		}
		r.SetRequestBody(body)
		for i := range 100 {
			r.AddChunk(chunk, time.Duration(i)*time.Millisecond)
		}
		w.budget.release(r.Charged)
		r.Budget, r.Charged = nil, 0
	}
	run() // grow the record's buffers once, as a pooled record has
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations per admitted 100-chunk stream, want 0", n)
	}
	if r.Truncated || len(r.Chunks.Data) != 100*len(chunk) {
		t.Errorf("capture: truncated %v, %d bytes", r.Truncated, len(r.Chunks.Data))
	}
	if b := w.Stats().BufferedBytes; b != 0 {
		t.Errorf("buffered %d bytes after release", b)
	}
}
