package chlog

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// mountSmall mounts a tmpfs of size bytes on a new directory (needs root);
// the test skips where that cannot be done.
func mountSmall(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestSpoolDiskFullKeepsNewest: the embedded spool on a file system that
// fills up keeps the newest rows whole and lets the oldest files go, as
// past spool_max_bytes; a full disk dropped each new block instead (Flush
// said rows were lost while older files stayed).
func TestSpoolDiskFullKeepsNewest(t *testing.T) {
	dir := mountSmall(t, "1m")
	w := newWriter(t, Options{SpoolDir: dir, FlushInterval: time.Hour})
	written, last := 0, map[string]bool{}
	for round := 0; round < 100; round++ {
		clear(last)
		for i := range 20 {
			r := sseRecord(round*20+i, 40)
			last[string(r.ID[:])] = true
			if err := w.Write(r); err != nil {
				t.Fatalf("round %d: Write: %v", round, err)
			}
			written++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.Flush(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Flush on a full disk lost the newest rows: %v", round, err)
		}
		if w.Stats().RowsDropped >= 200 {
			break
		}
	}
	dropped := w.Stats().RowsDropped
	if dropped == 0 {
		t.Fatalf("%d rows written to a 1 MiB file system and none let go: the test wrote too little", written)
	}
	closeWriter(t, w)
	assertNewestKept(t, dir, written, dropped, last)
}

// TestSpoolDiskFullClickHouseDown: with ClickHouse unreachable and a WAL,
// rows are spooled on a file system that fills up. New requests are
// captured meta only before any row is let go (spoolHigh follows the room
// on the disk, not only spool_max_bytes), then the oldest spool files go
// and the newest rows stay; the spool's bytes stay within the disk's room.
func TestSpoolDiskFullClickHouseDown(t *testing.T) {
	dir := mountSmall(t, "2m")
	w := newWriter(t, Options{URL: "http://127.0.0.1:1", SpoolDir: dir, Durability: DurabilityWAL,
		FlushInterval: time.Hour, InsertTimeout: 5 * time.Second})
	written, last := 0, map[string]bool{}
	dc := newDegradeCount()
	for round := 0; round < 200; round++ {
		clear(last)
		for i := range 20 {
			r := sseRecord(round*20+i, 40)
			dc.admit(t, w, r)
			last[string(r.ID[:])] = true
			_ = w.Write(r) // a WAL write may fail on the full disk; the row stays in memory
			written++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_ = w.Flush(ctx) // ClickHouse is down: spooled
		cancel()
		if w.Stats().RowsDropped >= 100 {
			break
		}
	}
	dropped := w.Stats().RowsDropped
	if dc.degraded == 0 || dropped == 0 {
		t.Fatalf("%d rows written to a 2 MiB file system: %d captured meta only, %d dropped; want both", written, dc.degraded, dropped)
	}
	dc.noDropBefore(t)
	closeWriter(t, w)
	assertNewestKept(t, dir, written, dropped, last)
}

// TestSpoolDiskFullClickHouseHung: ClickHouse hangs (inserts never
// answered, no insert failed yet) and the spool's file system is small:
// the writer spools the blocks that aged waiting, and new requests are
// captured meta only before any row is dropped. The disk's room was heeded
// only once an insert had failed (down): during the hang every request was
// captured whole, and groups of full rows larger than the disk were
// dropped on it (93% of the answered requests lost their rows).
func TestSpoolDiskFullClickHouseHung(t *testing.T) {
	chURL, db := testDB(t)
	dir := mountSmall(t, "2m")
	p, proxyURL := newCutProxy(t, chURL)
	p.mode.Store(hangInsert)
	w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: dir, FlushInterval: 200 * time.Millisecond,
		InsertTimeout: 5 * time.Minute, Retries: -1})
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = w.Close(ctx)
	}()
	dc := newDegradeCount()
	for round := 0; round < 200 && dc.degraded < 40; round++ {
		for i := range 20 {
			r := sseRecord(round*20+i, 40)
			dc.admit(t, w, r)
			_ = w.Write(r)
		}
		time.Sleep(150 * time.Millisecond) // blocks age, and are spooled
	}
	if dc.degraded == 0 {
		t.Fatalf("no request captured meta only while ClickHouse hung on a 2 MiB disk; %d rows dropped", w.Stats().RowsDropped)
	}
	dc.noDropBefore(t)
}

// degradeCount counts the requests admitted meta only, and the rows
// dropped when the first of them was.
type degradeCount struct {
	degraded         int
	droppedAtDegrade int64 // -1: none degraded yet
}

func newDegradeCount() *degradeCount { return &degradeCount{droppedAtDegrade: -1} }

// admit admits r into w (a refusal fails the test) and counts it.
func (dc *degradeCount) admit(t *testing.T, w *Writer, r *record.Record) {
	t.Helper()
	if !w.Admit(r) {
		t.Fatalf("request %x: admission refused", r.ID[:4])
	}
	if !r.Capture {
		if dc.degraded++; dc.droppedAtDegrade < 0 {
			dc.droppedAtDegrade = w.Stats().RowsDropped
		}
	}
}

// noDropBefore fails the test when rows were dropped before the first
// request was admitted meta only.
func (dc *degradeCount) noDropBefore(t *testing.T) {
	t.Helper()
	if dc.droppedAtDegrade != 0 {
		t.Fatalf("%d rows dropped before the first request was captured meta only", dc.droppedAtDegrade)
	}
}

// assertNewestKept checks the spool in dir once its writer is closed: the
// rows spooled and dropped are all written, and the last round's (last)
// are among those spooled.
func assertNewestKept(t *testing.T, dir string, written int, dropped int64, last map[string]bool) {
	t.Helper()
	rows := spooledRowList(t, dir)
	if int64(len(rows))+dropped != int64(written) {
		t.Fatalf("%d rows spooled + %d dropped, %d written", len(rows), dropped, written)
	}
	for _, r := range rows {
		delete(last, r.RequestID)
	}
	if len(last) > 0 {
		t.Fatalf("%d of the last round's 20 rows are not in the spool", len(last))
	}
}

// fillDisk writes a file into dir until its file system is full.
func fillDisk(t *testing.T, dir string) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for range 1 << 16 {
		if _, err := f.Write(chunk); err != nil {
			if !diskFull(err) {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatal("the file system never filled")
}

// TestSpoolGroupDiskFull: a group of blocks the spooler writes meets a
// full disk: the oldest files make room and the group is written (the
// group's appends were not retried: the newest rows were dropped whole
// while the older files stayed).
func TestSpoolGroupDiskFull(t *testing.T) {
	dir := mountSmall(t, "1m")
	w := newWriter(t, Options{URL: "http://127.0.0.1:1", SpoolDir: dir, FlushInterval: time.Hour, InsertTimeout: 5 * time.Second})
	for round := range 3 {
		for i := range 20 {
			_ = w.Write(sseRecord(round*20+i, 40))
		}
		_ = w.Flush(context.Background())
	}
	before := len(spoolNames(t, dir))
	fillDisk(t, dir)
	newest := map[string]bool{}
	for i := range 20 {
		r := sseRecord(100+i, 40)
		newest[string(r.ID[:])] = true
		_ = w.Write(r)
	}
	w.mu.Lock()
	b := w.cutLocked()
	w.mu.Unlock()
	var g spoolScratch
	if err := w.spoolGroup(&g, b); err != nil {
		t.Fatalf("spoolGroup on a full disk with %d older files: %v", before, err)
	}
	closeWriter(t, w)
	if after := len(spoolNames(t, dir)); after >= before+1 {
		t.Fatalf("%d spool files before, %d after: none let go", before, after)
	}
	for _, r := range spooledRowList(t, dir) {
		delete(newest, r.RequestID)
	}
	if len(newest) > 0 {
		t.Fatalf("%d of the newest 20 rows not spooled", len(newest))
	}
}

// TestSpoolDiskFullNoUselessDrop: a block larger than the spool's files
// and the space left together cannot be written however many files go:
// none goes (all were deleted, and then the block was dropped too).
func TestSpoolDiskFullNoUselessDrop(t *testing.T) {
	dir := mountSmall(t, "1m")
	w := newWriter(t, Options{SpoolDir: dir, FlushInterval: time.Hour})
	for round := range 3 {
		for i := range 20 {
			_ = w.Write(sseRecord(round*20+i, 40))
		}
		flush(t, w)
	}
	before := spoolNames(t, dir)
	r := sseRecord(100, 0)
	r.AddChunk(bytes.Repeat([]byte{'x'}, 1200<<10), time.Millisecond)
	_ = w.Write(r)
	if err := w.Flush(context.Background()); err == nil {
		t.Fatal("a 1.2 MiB row on a 1 MiB file system: Flush says it was stored")
	}
	if after := spoolNames(t, dir); !slices.Equal(before, after) {
		t.Fatalf("spool files %v before, %v after: deleted for a block that could never fit", before, after)
	}
	if got := w.Stats().RowsDropped; got != 1 {
		t.Fatalf("rows dropped %d; want the big row's 1", got)
	}
}

// TestDiskFullClickHouseUp: with ClickHouse taking the rows and nothing
// spooled, a full disk under spool_dir does not make requests meta only
// (a room of 0 made every admission meta only).
func TestDiskFullClickHouseUp(t *testing.T) {
	chURL, db := testDB(t)
	dir := mountSmall(t, "1m")
	fillDisk(t, dir)
	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: time.Hour})
	defer closeWriter(t, w)
	r := sseRecord(1, 2)
	if !w.Admit(r) {
		t.Fatal("admission refused")
	}
	if !r.Capture {
		t.Fatalf("captured meta only (%s) with ClickHouse up and an empty spool", r.TruncatedReason)
	}
	_ = w.Write(r)
}

// TestSpoolDirRemovedQueueForgets: spool_dir removed under a running relay (ClickHouse
// down, files queued): the queue forgets the files that went with it,
// counting their rows dropped, and later rows are spooled into the
// directory made again. The gauges said the files were there until a
// replay reached them, which with ClickHouse down never came.
func TestSpoolDirRemovedQueueForgets(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	w := newWriter(t, Options{URL: "http://127.0.0.1:1", SpoolDir: dir, FlushInterval: 100 * time.Millisecond, InsertTimeout: 5 * time.Second})
	for round := range 3 {
		for i := range 10 {
			_ = w.Write(sseRecord(round*10+i, 2))
		}
		_ = w.Flush(context.Background())
	}
	if st := w.Stats(); st.SpoolFiles == 0 || st.RowsSpooled != 30 {
		t.Fatalf("stats %+v; want 30 rows spooled", st)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the removed files forgotten", 30*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	if st := w.Stats(); st.SpoolBytes != 0 || st.RowsDropped != 30 {
		t.Fatalf("stats %+v; want no spool bytes and 30 rows dropped", st)
	}
	for i := range 5 {
		_ = w.Write(sseRecord(100+i, 2))
	}
	_ = w.Flush(context.Background())
	if st := w.Stats(); st.SpoolFiles != 1 || st.RowsDropped != 30 {
		t.Fatalf("stats %+v; want the new rows spooled in one file", st)
	}
	// Removed and made again at once (ext4 may give the new directory the
	// old one's inode): the file that went is forgotten too.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the file under the remade directory forgotten", 30*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	for i := range 5 {
		_ = w.Write(sseRecord(200+i, 2))
	}
	_ = w.Flush(context.Background())
	closeWriter(t, w)
	if st := w.Stats(); st.SpoolFiles != 1 || st.RowsDropped != 35 {
		t.Fatalf("stats %+v; want 35 rows dropped and the newest in one file", st)
	}
	if n := len(spooledRowList(t, dir)); n != 5 {
		t.Fatalf("%d rows in the remade spool_dir; want 5", n)
	}
}
