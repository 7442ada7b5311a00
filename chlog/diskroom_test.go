package chlog

import (
	"context"
	"os/exec"
	"testing"
	"time"
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

// TestSpoolDiskFullClickHouseDown: with ClickHouse unreachable and a WAL,
// rows are spooled on a file system that fills up. New requests are
// captured meta only before any row is let go (spoolHigh follows the room
// on the disk, not only spool_max_bytes), then the oldest spool files go
// and the newest rows stay; the spool's bytes stay within the disk's room.
func TestSpoolDiskFullClickHouseDown(t *testing.T) {
	dir := mountSmall(t, "2m")
	w := newWriter(t, Options{URL: "http://127.0.0.1:1", SpoolDir: dir, Durability: DurabilityWAL,
		FlushInterval: time.Hour, InsertTimeout: 5 * time.Second})
	written, degraded, last := 0, 0, map[string]bool{}
	droppedAtDegrade := int64(-1)
	for round := 0; round < 200; round++ {
		clear(last)
		for i := range 20 {
			r := sseRecord(round*20+i, 40)
			if !w.Admit(r) {
				t.Fatalf("round %d: admission refused", round)
			}
			if !r.Capture {
				if degraded++; droppedAtDegrade < 0 {
					droppedAtDegrade = w.Stats().RowsDropped
				}
			}
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
	if degraded == 0 || dropped == 0 {
		t.Fatalf("%d rows written to a 2 MiB file system: %d captured meta only, %d dropped; want both", written, degraded, dropped)
	}
	if droppedAtDegrade != 0 {
		t.Fatalf("%d rows dropped before the first request was captured meta only", droppedAtDegrade)
	}
	closeWriter(t, w)
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
