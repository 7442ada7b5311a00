package chlog

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// appendOnlyDir makes dir append-only (chattr +a: files can be made in it
// but not deleted or renamed) until the test ends; it skips the test where
// that is not possible (not root, or a file system without the attribute).
func appendOnlyDir(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("chattr", "+a", dir).CombinedOutput(); err != nil {
		t.Skipf("chattr +a %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("chattr", "-a", dir).CombinedOutput(); err != nil {
			t.Errorf("chattr -a %s: %v: %s", dir, err, out)
		}
	})
}

// TestReplayUndeletableFileNotResent: a spool file inserted by the
// replayer whose delete then fails (a directory that became read-only or
// append-only) must not be sent again, by this process or after a
// restart. Before the first fix it stayed at the head of the queue flagged
// "known not stored", and the replayer re-inserted it in a tight loop: one
// more copy of every row per pass. Before the second, a restart sent it
// again unchecked when the directory refused its rename to "u" too; now
// the file is emptied down to a mark that says so, and never sent.
func TestReplayUndeletableFileNotResent(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	// Spool rows without ClickHouse (embedded mode), then make the
	// directory refuse deletes.
	ids, name := spoolOneFile(t, dir, 5)
	appendOnlyDir(t, dir)

	// stays checks over several replay passes (each would send the file
	// again) that ClickHouse holds each row once.
	stays := func(when string) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			if n := count(t, chURL, db); n != len(ids) {
				t.Fatalf("%s: rows in ClickHouse = %d, want %d: the undeletable spool file was sent again", when, n, len(ids))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 100 * time.Millisecond})
	waitFor(t, "the spooled rows in ClickHouse", 60*time.Second, func() bool { return count(t, chURL, db) >= len(ids) })
	stays("first writer")
	if s := w.Stats(); s.RowsReplayed != int64(len(ids)) || s.SpoolFiles != 0 {
		t.Errorf("RowsReplayed = %d, SpoolFiles = %d; want %d, 0", s.RowsReplayed, s.SpoolFiles, len(ids))
	}
	closeWriter(t, w)
	info, err := os.Stat(filepath.Join(dir, name))
	if err != nil {
		t.Fatalf("the undeletable file: %v", err)
	}
	if !inserted(filepath.Join(dir, name), info.Size()) {
		t.Fatalf("the undeletable file holds %d bytes after its insert, want only the inserted mark", info.Size())
	}

	ents, err := ListSpool(dir, true)
	if err != nil || len(ents) != 1 || !strings.HasPrefix(ents[0].Reason, "emptied after its insert") {
		t.Fatalf("ListSpool = %+v, %v; want the one file, listed as emptied", ents, err)
	}

	// A restart finds the emptied file: it neither sends nor counts it.
	w2 := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 100 * time.Millisecond})
	defer closeWriter(t, w2)
	stays("after a restart")
	if s := w2.Stats(); s.RowsReplayed != 0 || s.SpoolFiles != 0 || s.RowsDropped != 0 {
		t.Errorf("after a restart: RowsReplayed = %d, SpoolFiles = %d, RowsDropped = %d; want 0, 0, 0", s.RowsReplayed, s.SpoolFiles, s.RowsDropped)
	}
	// A row written now takes a seq of its own, not the emptied file's.
	id := writeSSE(w2, 1)
	waitFor(t, "the new row in ClickHouse", 60*time.Second, func() bool { return count(t, chURL, db) == len(ids)+len(id) })
}

// TestSpoolWriteFailureReported: without ClickHouse (and without a WAL)
// rows whose spool write fails are lost; Flush and Close must say so, not
// only count and log it. Before the fix both returned nil.
func TestSpoolWriteFailureReported(t *testing.T) {
	dir := t.TempDir()
	w := newWriter(t, Options{SpoolDir: dir, FlushInterval: time.Hour})
	if out, err := exec.Command("chattr", "+i", dir).CombinedOutput(); err != nil {
		closeWriter(t, w)
		t.Skipf("chattr +i %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("chattr", "-i", dir).CombinedOutput(); err != nil {
			t.Errorf("chattr -i %s: %v: %s", dir, err, out)
		}
	})
	ids := writeSSE(w, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err == nil || !strings.Contains(err.Error(), "3 rows dropped") {
		t.Errorf("Flush = %v, want the 3 rows dropped", err)
	}
	writeSSE(w, 2)
	if err := w.Close(ctx); err == nil || !strings.Contains(err.Error(), "2 rows dropped") {
		t.Errorf("Close = %v, want the 2 rows dropped", err)
	}
	if s := w.Stats(); s.RowsDropped != int64(len(ids)+2) {
		t.Errorf("RowsDropped = %d, want %d", s.RowsDropped, len(ids)+2)
	}
}

// spoolOneFile spools n rows into dir through an embedded-mode writer (no
// ClickHouse), as one file flagged "k", and returns their ids and the file's
// name.
func spoolOneFile(t *testing.T, dir string, n int) (map[string]bool, string) {
	t.Helper()
	ew := newWriter(t, Options{SpoolDir: dir, FlushInterval: time.Hour})
	ids := writeSSE(ew, n)
	closeWriter(t, ew)
	names := spoolNames(t, dir)
	if len(names) != 1 {
		t.Fatalf("spool files %v, want 1", names)
	}
	return ids, names[0]
}
