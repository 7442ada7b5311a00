package chlog

import (
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestRecycledBlockCharged: a block reused with room to spare is charged
// its rows' bytes all the same (the budget counts what blocks hold, not
// what they grew), nothing for the spare room while it holds no rows, and
// the budget is back to zero once everything is spooled.
func TestRecycledBlockCharged(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, Options{SpoolDir: dir, FlushInterval: time.Hour, MaxBufferBytes: 1 << 30, BatchBytes: 4 << 20})
	body := bigBody(1 << 20)
	chunk := []byte("data: x\n\n")
	for i := range 12 { // three blocks' worth: the writer keeps grown blocks
		writeRecycled(t, w, bodyRecord(w, i, body, chunk))
	}
	w.mu.Lock()
	blk := w.cutLocked()
	w.mu.Unlock()
	w.budget.release(int64(blk.held))
	w.recycle(blk)
	w.mu.Lock()
	spare, rows := cap(w.cur.reqBody.Buf), w.cur.rows
	w.mu.Unlock()
	if rows != 0 || spare < 3<<20 {
		t.Fatalf("current block: %d rows, %d bytes of body room; want a recycled, empty one", rows, spare)
	}
	if b := w.Stats().BufferedBytes; b != 0 {
		t.Fatalf("buffered %d bytes with no row held; the spare room is not charged", b)
	}
	for i := range 2 {
		r := bodyRecord(w, 100+i, body, chunk)
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		record.Release(r)
	}
	if b := w.Stats().BufferedBytes; b < 2<<20 {
		t.Fatalf("buffered %d bytes for two 1 MiB rows in a recycled block", b)
	}
	flush(t, w)
	if st := w.Stats(); st.BufferedBytes != 0 || st.RowsSpooled != 2 {
		t.Fatalf("after flush: %+v", st)
	}
}
