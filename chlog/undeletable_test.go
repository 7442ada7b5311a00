package chlog

import (
	"os/exec"
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
// append-only) must not be sent again. Before the fix it stayed at the head
// of the queue flagged "known not stored", and the replayer re-inserted it
// in a tight loop: one more copy of every row per pass.
func TestReplayUndeletableFileNotResent(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	// Spool rows without ClickHouse (embedded mode), then make the
	// directory refuse deletes.
	ew := newWriter(t, Options{SpoolDir: dir, FlushInterval: time.Hour})
	ids := writeSSE(ew, 5)
	closeWriter(t, ew)
	if n := len(spoolNames(t, dir)); n != 1 {
		t.Fatalf("spool files = %d, want 1", n)
	}
	appendOnlyDir(t, dir)

	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 100 * time.Millisecond})
	defer closeWriter(t, w)
	waitFor(t, "the spooled rows in ClickHouse", 60*time.Second, func() bool { return count(t, chURL, db) >= len(ids) })
	// Let several replay passes go by: each would send the file again.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if n := count(t, chURL, db); n != len(ids) {
			t.Fatalf("rows in ClickHouse = %d, want %d: the undeletable spool file was sent again", n, len(ids))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := w.Stats(); s.RowsReplayed != int64(len(ids)) {
		t.Errorf("RowsReplayed = %d, want %d", s.RowsReplayed, len(ids))
	}
}
