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
