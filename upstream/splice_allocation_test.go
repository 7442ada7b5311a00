//go:build !race

package upstream

import (
	"io"
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// Splicing a body allocates nothing once warm: the pipe comes from the
// pool and goes back, the callbacks are bound once, and the record's
// times grow only the first time. Each run relays a 2 MiB fixed-length
// body over the same two real TCP connections, its pieces written by a
// long-lived goroutine and drained by another.
func TestSpliceAllocatesNothing(t *testing.T) {
	body := audio(2 << 20)
	h := newSpliceHarness(t, bodyFixed, int64(len(body)), false, false)
	go io.Copy(io.Discard, h.peer)
	next := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		for range next {
			wrote <- writeSlowly(h.up, body, 256<<10, 0)
		}
	}()
	defer close(next)
	s := h.s
	run := func() {
		s.body.reset(&s.rb, bodyFixed, int64(len(body)))
		r := s.rec
		r.Chunks.Ends, r.Chunks.AtMS = r.Chunks.Ends[:0], r.Chunks.AtMS[:0]
		r.ChunkCount, r.BytesOut, r.TTFT = 0, 0, record.None
		s.ttft.reset()
		s.splice.crlfOwed = false // the test's client reads no framing
		s.copied = 0
		next <- struct{}{}
		if n, err := s.copyTo(h.w, h.bw); err != nil || n != int64(len(body)) {
			t.Fatalf("copied %d, %v; want %d", n, err, len(body))
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
	}
	run()
	before := SplicedBytes()
	if n := testing.AllocsPerRun(10, run); n != 0 {
		t.Errorf("%v allocations per spliced 2 MiB body, want 0", n)
	}
	if spliced := SplicedBytes() - before; spliced < 11*int64(len(body))/2 {
		t.Errorf("%d bytes spliced in 11 runs of %d; want most of them", spliced, len(body))
	}
}
