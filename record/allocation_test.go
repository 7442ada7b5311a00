//go:build !race

package record

import (
	"bytes"
	"testing"
)

// TestWindowAllocs: feeding the usage window and reading it back never
// allocates.
func TestWindowAllocs(t *testing.T) {
	var w Window
	b := bytes.Repeat([]byte("data: {\"x\":1}\n\n"), 700)
	if n := testing.AllocsPerRun(50, func() {
		w.Write(b)
		w.Write(b[:33])
		w.Parts()
	}); n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}

// TestBorrowRequestBodyAllocs: capturing a large request body by reference
// allocates nothing.
func TestBorrowRequestBodyAllocs(t *testing.T) {
	o := &owned{b: bytes.Repeat([]byte("x"), 1<<20)}
	if n := testing.AllocsPerRun(50, func() {
		r := Acquire(4 << 20)
		r.Capture = true
		r.BorrowRequestBody(o.b, o)
		if !r.BorrowedBodyValid() {
			t.Fatal("dropped")
		}
		Release(r)
	}); n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}
