package chlog

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestCloseDeadlineSpoolsEverything: Close whose ctx ends while an insert
// hangs (ClickHouse stuck at SIGTERM) must still leave every written row
// in the spool by the time it returns: the block in flight and the current
// block, written while the flusher was busy. Before the fix the current
// block was never spooled (the flusher's stop path took only the send
// queue) and Close returned while the insert still held its block, so a
// process exiting after Close lost both, uncounted. Close then reports no
// error: no row was lost (it returned the ctx error, and the relay exited 1).
func TestCloseDeadlineSpoolsEverything(t *testing.T) {
	chURL, db := testDB(t)
	p, proxyURL := newCutProxy(t, chURL)
	p.mode.Store(hangInsert)
	dir := t.TempDir()
	w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: dir, FlushInterval: time.Hour,
		BatchRows: 3, InsertTimeout: 20 * time.Second, Retries: -1})

	ids := writeSSE(w, 3) // a full block: the flusher sends it, and hangs
	waitFor(t, "the flusher's insert to hang", 30*time.Second, func() bool { return p.sent.Load() > 0 })
	for id := range writeSSE(w, 2) { // the current block, while the flusher is busy
		ids[id] = true
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// Every row is in the spool: no error (the relay exits 0).
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v; want none, the rows of the hung insert spooled", err)
	}
	got := map[string]bool{}
	for _, r := range spooledRowList(t, dir) {
		if got[r.RequestID] {
			t.Errorf("row %s spooled twice", r.RequestID)
		}
		got[r.RequestID] = true
	}
	for id := range ids {
		if !got[id] {
			t.Errorf("row %s is not in the spool after Close returned", id)
		}
	}
	if s := w.Stats(); s.RowsDropped != 0 {
		t.Errorf("RowsDropped = %d, want 0", s.RowsDropped)
	}
}

// TestCloseReportsRowsLostAfterDeadline: an insert that hangs past Close's
// deadline is abandoned and its block spooled; when that spool write
// fails (the spool directory gone), its rows are lost, and Close says so.
// Its error went nowhere (the flusher's send and Close's own Flush had no
// reader left), and Close returned nil with the rows counted dropped. Both
// ways: a full block the flusher sends itself, and the current block
// Close's Flush sends.
func TestCloseReportsRowsLostAfterDeadline(t *testing.T) {
	for _, rows := range []int{3, 2} {
		t.Run(fmt.Sprintf("%d rows", rows), func(t *testing.T) {
			chURL, db := testDB(t)
			p, proxyURL := newCutProxy(t, chURL)
			p.mode.Store(hangInsert)
			dir := t.TempDir()
			w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: dir, FlushInterval: time.Hour,
				BatchRows: 3, InsertTimeout: 20 * time.Second, Retries: -1})
			writeSSE(w, rows)
			gone := make(chan struct{})
			go func() {
				defer close(gone)
				for end := time.Now().Add(30 * time.Second); p.sent.Load() == 0 && time.Now().Before(end); {
					time.Sleep(5 * time.Millisecond)
				}
				// The spool can no longer be written: the directory gone
				// and a file in its place, which the writer cannot make a
				// spool_dir again (it re-makes a removed one: a removal
				// alone let a block that began after it be spooled).
				for range 100 {
					_ = os.RemoveAll(dir)
					if os.WriteFile(dir, []byte("not a directory"), 0o600) == nil {
						return
					}
				}
			}()
			if rows == 3 {
				<-gone // the flusher's insert hangs before Close begins
			}
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := w.Close(ctx)
			<-gone
			if s := w.Stats(); s.RowsDropped != int64(rows) {
				t.Fatalf("%d rows dropped, want %d (the spool write must fail): %+v", s.RowsDropped, rows, s)
			}
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d rows dropped", rows)) {
				t.Errorf("Close: %v; want the %d rows dropped", err, rows)
			}
		})
	}
}

// TestHungInsertCurrentBlockSpooled: while the flusher's insert hangs
// (ClickHouse stopped), rows written meanwhile reach the spool within
// about a flush interval, so a crash loses no more (batch durability's
// promise); they stayed in the current block in memory until the insert
// timed out, the flusher being the only one to cut it.
func TestHungInsertCurrentBlockSpooled(t *testing.T) {
	chURL, db := testDB(t)
	p, proxyURL := newCutProxy(t, chURL)
	p.mode.Store(hangInsert)
	dir := t.TempDir()
	w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: dir, FlushInterval: 200 * time.Millisecond,
		InsertTimeout: 60 * time.Second, Retries: -1})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = w.Close(ctx)
	}()
	_ = w.Write(sseRecord(0, 2))
	waitFor(t, "the flusher's insert to hang", 30*time.Second, func() bool { return p.sent.Load() > 0 })
	want := map[string]bool{}
	for i := range 3 {
		r := sseRecord(10+i, 2)
		want[string(r.ID[:])] = true
		_ = w.Write(r)
	}
	waitFor(t, "the rows written during the hang in the spool", 30*time.Second, func() bool {
		n := 0
		for _, r := range spooledRowList(t, dir) {
			if want[r.RequestID] {
				n++
			}
		}
		return n == len(want)
	})
}

// TestCloseReportsSpoolCapDrops: rows the spool's cap deletes once Close
// has begun (the last block it spools pushes the spool over
// spool_max_bytes) are lost, and Close says so; they were counted dropped
// and Close returned nil.
func TestCloseReportsSpoolCapDrops(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, Options{SpoolDir: dir, SpoolMaxBytes: 1000, FlushInterval: time.Hour})
	writeSSE(w, 5) // one block of about 3.5 KB: over the cap once spooled
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := w.Close(ctx)
	if s := w.Stats(); s.RowsDropped != 5 {
		t.Fatalf("%d rows dropped, want 5 (the block over the cap): %+v", s.RowsDropped, s)
	}
	if err == nil || !strings.Contains(err.Error(), "5 rows dropped") {
		t.Errorf("Close: %v; want the 5 rows dropped", err)
	}
}
