//go:build !race

package chlog

import (
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestSortRowsAllocs: putting a recycled block's rows in key order, as
// encode does first, allocates nothing once its scratch buffers have grown.
func TestSortRowsAllocs(t *testing.T) {
	t0 := time.Unix(1_750_000_000, 0)
	var recs []*record.Record
	for i := range 64 {
		r := sseRecord(i, 3)
		r.Route, r.Start = []string{"b", "a", "c"}[i%3], t0.Add(time.Duration(64-i)*time.Second)
		recs = append(recs, r)
	}
	b := newBlock()
	run := func() {
		b.reset()
		for _, r := range recs {
			b.add(r)
		}
		b.sortRows()
	}
	for range 8 { // the scratch buffers trade places with the columns' until all have grown
		run()
	}
	if n := testing.AllocsPerRun(20, run); n != 0 {
		t.Errorf("%v allocations per fill and sort of a recycled block, want 0", n)
	}
	if !b.keySorted() {
		t.Error("block not in key order after sortRows")
	}
}
