package chlog

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// spooledRows decodes every spool file in dir into rows by request id.
func spooledRows(t *testing.T, dir string) map[string]Row {
	t.Helper()
	got := map[string]Row{}
	for _, r := range spooledRowList(t, dir) {
		got[r.RequestID] = r
	}
	return got
}

// streamRecord is a full-capture record as handlers make it: acquired with
// limit, admitted by w, then fed chunks.
func streamRecord(w *Writer, i, limit int) (*record.Record, bool) {
	r := record.Acquire(limit)
	r.ID = newID(i)
	r.Start = time.Now()
	r.Route, r.Kind, r.Capture, r.Status = "openai", record.KindSSE, true, 200
	r.RequestHeaders = append(r.RequestHeaders, `{"content-type":"application/json"}`...)
	ok := w.Admit(r)
	return r, ok
}

// TestBudgetDegradeThenRefuse: records in flight fill the budget; new
// requests are first admitted meta only (truncated_reason storage_budget),
// then refused; a capture that grows past the budget stops (same reason).
// Every admitted record is stored, nothing is dropped, and the budget is
// back to zero once the blocks are spooled.
func TestBudgetDegradeThenRefuse(t *testing.T) {
	dir := t.TempDir()
	const budgetBytes = 2 << 20
	w := newWriter(t, Options{SpoolDir: dir, BatchRows: 1 << 20, BatchBytes: 1 << 30, FlushInterval: time.Hour, MaxBufferBytes: budgetBytes})
	chunk := bytes.Repeat([]byte("x"), 8<<10)

	var held []*record.Record
	full, degraded, starved := 0, 0, 0
	for i := 0; i < 1000; i++ {
		r, ok := streamRecord(w, i, 512<<10)
		if !ok {
			if r.Capture {
				t.Fatal("a refused record kept capture on")
			}
			// Refused: handlers answer 503 and still hand the record over.
			r.Status, r.ErrorType = 503, record.ErrStorageOverloaded
			if err := w.Write(r); err != nil {
				t.Fatalf("write refused record: %v", err)
			}
			record.Release(r)
			break
		}
		for c := 0; c < 63; c++ { // 504 KiB of chunks when full capture is on
			r.AddChunk(chunk, time.Duration(c)*time.Millisecond)
		}
		switch {
		case !r.Capture && r.TruncatedReason == record.TruncStorageBudget && r.Truncated && len(r.Chunks.Data) == 0:
			degraded++
		case r.Capture && r.TruncatedReason == record.TruncStorageBudget && r.Truncated:
			starved++
		case r.Capture && !r.Truncated && len(r.Chunks.Data) == 63*len(chunk):
			full++
		default:
			t.Fatalf("record %d: capture %v truncated %v reason %q data %d", i, r.Capture, r.Truncated, r.TruncatedReason, len(r.Chunks.Data))
		}
		held = append(held, r)
		if b := w.Stats().BufferedBytes; b > budgetBytes {
			t.Fatalf("buffered %d bytes, over the budget %d", b, budgetBytes)
		}
	}
	st := w.Stats()
	if full == 0 || starved == 0 || degraded == 0 || st.Refused != 1 || st.RowsDegraded != int64(degraded+starved) {
		t.Fatalf("full %d starved %d degraded %d, stats %+v", full, starved, degraded, st)
	}
	t.Logf("full %d, starved mid-stream %d, meta only %d, then refused; buffered %d of %d", full, starved, degraded, st.BufferedBytes, budgetBytes)

	ids := map[string]bool{}
	for _, r := range held {
		ids[r.IDString()] = true
		if err := w.Write(r); err != nil {
			t.Fatalf("write admitted record: %v", err)
		}
		record.Release(r)
		if b := w.Stats().BufferedBytes; b > budgetBytes {
			t.Fatalf("buffered %d bytes after writes, over the budget %d", b, budgetBytes)
		}
	}
	flush(t, w)
	if st := w.Stats(); st.BufferedBytes != 0 || st.RowsDropped != 0 || st.RowsSpooled != int64(len(held)) {
		t.Fatalf("after flush: %+v, want every one of %d rows spooled and nothing buffered", st, len(held))
	}
	closeWriter(t, w)
	rows := spooledRows(t, dir)
	for id := range ids {
		row, ok := rows[id]
		if !ok {
			t.Fatalf("admitted request %s has no row", id)
		}
		if row.Truncated && row.TruncatedReason != record.TruncStorageBudget {
			t.Errorf("row %s: truncated_reason %q", id, row.TruncatedReason)
		}
	}
	if len(rows) != len(ids) {
		t.Fatalf("%d rows for %d admitted requests (the refused one must not be stored without room)", len(rows), len(ids))
	}
}

// TestBudgetWriteAfterClose: the row is dropped and counted, the error is
// ErrClosed, and the record's reservation goes back to the budget.
func TestBudgetWriteAfterClose(t *testing.T) {
	w := newWriter(t, Options{SpoolDir: t.TempDir(), FlushInterval: time.Hour, MaxBufferBytes: 1 << 20})
	r, ok := streamRecord(w, 1, 64<<10)
	if !ok {
		t.Fatal("refused with an empty budget")
	}
	r.AddChunk([]byte("data: x\n\n"), time.Millisecond)
	closeWriter(t, w)
	if err := w.Write(r); !errors.Is(err, ErrClosed) {
		t.Fatalf("Write after Close: %v, want ErrClosed", err)
	}
	if st := w.Stats(); st.BufferedBytes != 0 || st.RowsDropped != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// spoolerWriter is a Writer with what spoolGroup needs and no goroutines:
// options o (defaults set), a 64 MiB budget and the spool in dir.
func spoolerWriter(t *testing.T, dir string, o Options) *Writer {
	t.Helper()
	w := &Writer{o: o, log: testLogger(t), spoolq: make(chan *block, spoolQueue)}
	w.o.setDefaults()
	w.budget = newBudget(64<<20, &w.stats)
	var err error
	if w.spool, err = openSpool(w, dir, 1<<30); err != nil {
		t.Fatal(err)
	}
	return w
}

// addHeld adds r to blk and charges what blk grew by to w's budget, as
// Write does, and releases r.
func addHeld(w *Writer, blk *block, r *record.Record) {
	before := blockMem(blk)
	blk.add(r)
	d := blockMem(blk) - before
	blk.held += d
	w.budget.move(0, int64(d))
	record.Release(r)
}

// TestSpoolGroupCommit: blocks waiting for the spooler become one spool file
// whose name counts all their rows and names the first and last request.
func TestSpoolGroupCommit(t *testing.T) {
	dir := t.TempDir()
	w := spoolerWriter(t, dir, Options{})
	var blocks []*block
	var ids []string
	for b := range 3 {
		blk := newBlock()
		blk.seq = uint64(100 + b)
		for i := range 2 + b {
			r := sseRecord(10*b+i, 3)
			ids = append(ids, r.IDString())
			addHeld(w, blk, r)
		}
		blocks = append(blocks, blk)
	}
	w.spoolq <- blocks[1]
	w.spoolq <- blocks[2]
	var g spoolScratch
	w.spoolGroup(&g, blocks[0])

	names := spoolNames(t, dir)
	if len(names) != 1 {
		t.Fatalf("spool files %v; want one group file", names)
	}
	f := parseMust(t, names[0])
	if f.seq != 100 || f.rows != 9 || string(f.first) != ids[0] || string(f.last) != ids[len(ids)-1] {
		t.Fatalf("group file %s: seq %d rows %d", names[0], f.seq, f.rows)
	}
	rows := spooledRows(t, dir)
	for _, id := range ids {
		if _, ok := rows[id]; !ok {
			t.Fatalf("row %s missing from the group file", id)
		}
	}
	if st := w.Stats(); st.BufferedBytes != 0 || st.RowsSpooled != 9 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSpoolGroupPastBatch: waiting blocks go into one spool file up to the
// coalesce limit (four batches here), not one batch. The blocks are
// written as they are encoded (O_DIRECT for the aligned part, the rest
// carried into the next block's write); every row decodes back, and the
// budget is given back whole.
func TestSpoolGroupPastBatch(t *testing.T) {
	dir := t.TempDir()
	w := spoolerWriter(t, dir, Options{BatchBytes: 64 << 10, MaxBufferBytes: 64 << 20})
	if lim := w.coalesceLimit(); lim != 256<<10 {
		t.Fatalf("coalesce limit %d; want four batches", lim)
	}
	var blocks []*block
	ids := map[string]bool{}
	for b := range 6 {
		blk := newBlock()
		blk.seq = uint64(100 + b)
		for i := range 2 {
			r := sseRecord(10*b+i, 3)
			r.AddChunk(bytes.Repeat([]byte{'a' + byte(b)}, 30000+777*i+b), time.Second) // ragged: no block ends aligned
			ids[r.IDString()] = true
			addHeld(w, blk, r)
		}
		blocks = append(blocks, blk)
	}
	for _, b := range blocks[1:] {
		w.spoolq <- b
	}
	var g spoolScratch
	if err := w.spoolGroup(&g, blocks[0]); err != nil {
		t.Fatal(err)
	}
	if err := w.spoolGroup(&g, <-w.spoolq); err != nil {
		t.Fatal(err)
	}
	names := spoolNames(t, dir)
	if len(names) != 2 {
		t.Fatalf("spool files %v; want two: five blocks (past four batches) and the last", names)
	}
	if f := parseMust(t, names[0]); f.seq != 100 || f.rows != 10 {
		t.Fatalf("first file %s: seq %d rows %d; want 100, 10", names[0], f.seq, f.rows)
	}
	if st, err := os.Stat(filepath.Join(dir, names[0])); err != nil || st.Size() <= int64(w.o.BatchBytes) {
		t.Fatalf("first file: %v, %v; want past one batch", st, err)
	}
	rows := spooledRows(t, dir)
	if len(rows) != len(ids) {
		t.Fatalf("%d rows decoded; want %d", len(rows), len(ids))
	}
	for id := range ids {
		if _, ok := rows[id]; !ok {
			t.Fatalf("row %s missing", id)
		}
	}
	if st := w.Stats(); st.BufferedBytes != 0 || st.RowsSpooled != 12 {
		t.Fatalf("stats %+v", st)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

// TestHugeBlockNotKept: a block and an encode buffer that grew past the
// writer's keep size are dropped after use, not kept at their peak.
func TestHugeBlockNotKept(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, Options{SpoolDir: dir, FlushInterval: time.Hour, MaxBufferBytes: 256 << 20, BatchBytes: 1 << 20})
	if w.keep != keepBufferBytes {
		t.Fatalf("keep %d; want %d", w.keep, keepBufferBytes)
	}
	big := bytes.Repeat([]byte("y"), 6<<20) // one row past the keep size
	const rows = 3
	for i := range rows {
		r := record.Acquire(8 << 20)
		r.ID, r.Start, r.Capture = newID(i), time.Now(), true
		r.AddChunk(big, time.Millisecond)
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		record.Release(r)
	}
	flush(t, w)
	w.mu.Lock()
	for _, b := range append([]*block{w.cur}, w.free...) {
		if n := blockCap(b); n > w.keep {
			t.Errorf("a kept block holds %d bytes of column buffers", n)
		}
	}
	w.mu.Unlock()
	closeWriter(t, w)
	if n := len(spooledRows(t, dir)); n != rows {
		t.Fatalf("%d rows spooled", n)
	}
}

// TestSpoolPressureDegradesCapture: with ClickHouse (here unreachable, so
// blocks go to the spool), once the spool is three quarters of
// spool_max_bytes a new request is admitted meta only (storage_budget)
// rather than let the spool's cap delete rows; the embedded spool (no
// ClickHouse), the store itself, keeps capturing.
func TestSpoolPressureDegradesCapture(t *testing.T) {
	for _, withCH := range []bool{true, false} {
		t.Run(map[bool]string{true: "clickhouse", false: "embedded"}[withCH], func(t *testing.T) {
			const spoolMax = 2 << 20
			o := Options{SpoolMaxBytes: spoolMax, FlushInterval: 50 * time.Millisecond, BatchRows: 2}
			if withCH {
				o.URL = closedPortURL(t)
			}
			w := newWriter(t, o)
			defer closeWriter(t, w)
			chunk := bytes.Repeat([]byte("x"), 64<<10)
			i := 0
			for ; w.Stats().SpoolBytes < spoolMax*3/4; i++ {
				if i == 200 {
					t.Fatalf("the spool holds %d bytes after %d rows of 256 KiB", w.Stats().SpoolBytes, i)
				}
				r, ok := streamRecord(w, i, 512<<10)
				if !ok || !r.Capture {
					t.Fatalf("row %d (spool %d bytes): admitted %v, capture %v", i, w.Stats().SpoolBytes, ok, r.Capture)
				}
				for c := 0; c < 4; c++ {
					r.AddChunk(chunk, time.Duration(c)*time.Millisecond)
				}
				if err := w.Write(r); err != nil {
					t.Fatal(err)
				}
				record.Release(r)
				waitFor(t, "the row spooled", 30*time.Second, func() bool { return w.Stats().RowsSpooled > int64(i) })
			}
			r, ok := streamRecord(w, i, 512<<10)
			if !ok {
				t.Fatal("a request refused")
			}
			degraded := !r.Capture && r.TruncatedReason == record.TruncStorageBudget
			if degraded != withCH {
				t.Errorf("spool %d of %d bytes: capture %v, reason %q; want degraded %v", w.Stats().SpoolBytes, spoolMax, r.Capture, r.TruncatedReason, withCH)
			}
			if err := w.Write(r); err != nil {
				t.Fatal(err)
			}
			record.Release(r)
			if st := w.Stats(); st.RowsDropped != 0 {
				t.Errorf("rows dropped: %+v", st)
			}
		})
	}
}

// TestBudgetChargesRetainedBuffers: a pooled record's kept buffers (up to
// 64 KiB each) are charged at admission; capture into them was never
// charged (only growth past them was), so streams under 64 KiB escaped the
// budget. With no room for them they are let go of, and capture grows its
// own, charged.
func TestBudgetChargesRetainedBuffers(t *testing.T) {
	w := newWriter(t, Options{SpoolDir: t.TempDir(), FlushInterval: time.Hour, MaxBufferBytes: 4 << 20})
	r := record.Acquire(1 << 20)
	r.ID, r.Start, r.Route, r.Kind, r.Capture, r.Status = newID(1), time.Now(), "openai", record.KindSSE, true, 200
	r.RequestBody, r.Chunks.Data = make([]byte, 0, 16<<10), make([]byte, 0, 40000) // as a pooled record keeps them
	r.Chunks.Ends, r.Chunks.AtMS = make([]uint32, 0, 1024), make([]uint32, 0, 1024)
	retained := int64(16<<10 + 40000 + 8*1024)
	if !w.Admit(r) {
		t.Fatal("refused")
	}
	if r.Charged != rowSlot+retained {
		t.Fatalf("charged %d at admission, want the row slot and the %d bytes of kept buffers", r.Charged, retained)
	}
	used := w.budget.used.Load()
	r.AddChunk(bytes.Repeat([]byte("x"), 39000), 0) // fits the kept buffer
	if w.budget.used.Load() != used {
		t.Fatalf("capture into a charged buffer charged again: %d -> %d", used, w.budget.used.Load())
	}
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	record.Release(r)
	if err := w.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if u := w.budget.used.Load(); u != 0 {
		t.Fatalf("budget %d after the row was spooled, want 0", u)
	}
}
