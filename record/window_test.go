package record

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"
)

// TestWindow: whatever the sizes of the writes, Parts gives the stream's
// first WindowHead and last WindowTail bytes, or all of it when it fit,
// and writing after Parts goes on correctly.
func TestWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, total := range []int{0, 1, WindowHead - 1, WindowHead, WindowHead + 1, WindowHead + WindowTail, WindowHead + WindowTail + 1, 3*WindowTail + 17, 200 << 10} {
		for _, maxWrite := range []int{1, 100, 5000, 20000, 70000} {
			if total > 20000 && maxWrite < 100 {
				continue
			}
			var w Window
			var all []byte
			check := func() {
				t.Helper()
				head, tail, whole := w.Parts()
				if whole != (len(all) <= WindowHead+WindowTail) {
					t.Fatalf("total %d: whole = %v", len(all), whole)
				}
				if whole {
					if !bytes.Equal(head, all) || tail != nil {
						t.Fatalf("total %d: whole stream differs", len(all))
					}
					return
				}
				if !bytes.Equal(head, all[:WindowHead]) || !bytes.Equal(tail, all[len(all)-WindowTail:]) {
					t.Fatalf("total %d, writes up to %d: head or tail differs", len(all), maxWrite)
				}
			}
			for len(all) < total {
				b := make([]byte, min(1+rng.IntN(maxWrite), total-len(all)))
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				w.Write(b)
				all = append(all, b...)
				if rng.IntN(max(8, 2000/maxWrite)) == 0 {
					check()
				}
			}
			check()
			if w.Len() < int64(min(len(all), WindowHead+WindowTail)) {
				t.Fatalf("Len %d", w.Len())
			}
		}
	}
}

// TestAddChunkFeedsWindow: an sse record without capture keeps its
// response in the window; a fully captured one needs none; one truncated
// by max_capture_bytes starts it at the first byte not captured, seeded
// with the captured head; a raw one has none.
func TestAddChunkFeedsWindow(t *testing.T) {
	usageEvent := []byte(`data: {"usage":{"prompt_tokens":1,"completion_tokens":2}}`)
	r := Acquire(64)
	r.Kind = KindSSE
	r.AddChunk(usageEvent, 0)
	if r.Window == nil {
		t.Fatal("sse meta record has no window")
	}
	if head, _, whole := r.Window.Parts(); !whole || string(head) != string(usageEvent) {
		t.Fatalf("window head %q whole %v", head, whole)
	}
	Release(r)
	r = Acquire(64)
	if r.Window != nil {
		t.Fatal("released record kept its window")
	}
	r.Kind = KindRaw
	r.AddChunk([]byte("audio"), 0)
	if r.Window != nil {
		t.Fatal("raw record fed a window")
	}
	Release(r)

	r = Acquire(40)
	r.Kind, r.Capture = KindSSE, true
	r.AddChunk([]byte("data: first\n\n"), 0)
	if r.Window != nil {
		t.Fatal("fully captured stream got a window")
	}
	r.AddChunk(usageEvent, time.Millisecond) // past the 40-byte limit
	if !r.Truncated || r.Window == nil {
		t.Fatalf("truncated %v window %v", r.Truncated, r.Window)
	}
	head, tail, whole := r.Window.Parts()
	if whole || string(head) != "data: first\n\n" || string(tail) != string(usageEvent) {
		t.Fatalf("seeded window: head %q tail %q whole %v", head, tail, whole)
	}
	Release(r)
}
