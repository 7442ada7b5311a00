package record

import (
	"slices"
	"testing"
)

// TestNextByteCap: buffers double from 1 KiB to 4 KiB, then grow by a
// fifth to a third, each step one of Go's size classes (an allocation of
// that many bytes has nothing left over); past 32 KiB by a quarter in
// whole 8 KiB pages.
func TestNextByteCap(t *testing.T) {
	want := []int{1024, 2048, 4096, 5376, 6784, 8192, 10240, 12288, 16384, 20480, 24576, 32768, 40960, 57344}
	var got []int
	for c := 0; len(got) < len(want); {
		c = nextByteCap(c)
		got = append(got, c)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("capacities %v, want %v", got, want)
	}
	for i, c := range got {
		if n := cap(slices.Grow([]byte(nil), c)); n != c {
			t.Errorf("capacity %d: an allocation of it has room for %d", c, n)
		}
		if i > 2 && (c*5 < got[i-1]*6 || c*3 > got[i-1]*4+3*8192) {
			t.Errorf("capacity %d after %d: not a fifth to a third more (past 32 KiB, a page more)", c, got[i-1])
		}
	}
}

// TestChunkBufferGrowth: once past 4 KiB, a stream's captured chunks lie
// in a buffer at most a third (and a page) larger than their bytes.
func TestChunkBufferGrowth(t *testing.T) {
	r := Acquire(1 << 20)
	defer Release(r)
	r.Capture = true
	chunk := make([]byte, 170)
	for i := range 200 {
		r.AddChunk(chunk, 0)
		if n, c := len(r.Chunks.Data), cap(r.Chunks.Data); n > 4096 && c*3 > n*4+3*8192 {
			t.Fatalf("chunk %d: %d bytes in a buffer of %d", i, n, c)
		}
	}
	if r.Truncated || len(r.Chunks.Data) != 200*170 {
		t.Fatalf("captured %d bytes (truncated %v), want %d", len(r.Chunks.Data), r.Truncated, 200*170)
	}
}
