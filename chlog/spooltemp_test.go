package chlog

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestSpoolOpenDeletesOwnTemps: opening the spool deletes the temporary
// files a crash left (a spool file or the replay journal being written)
// and leaves an operator's own "*.tmp" alone, as every other file.
func TestSpoolOpenDeletesOwnTemps(t *testing.T) {
	dir := t.TempDir()
	own := []string{"00000000000000000007-3-k-a-b.native.tmp", "00000000000000000009-group.native.tmp", replayJournalName + ".tmp"}
	theirs := []string{"operator-notes.tmp", "backup.tmp"}
	for _, n := range append(append([]string{}, own...), theirs...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	closeWriter(t, newWriter(t, Options{SpoolDir: dir}))
	for _, n := range own {
		if _, err := os.Stat(filepath.Join(dir, n)); !os.IsNotExist(err) {
			t.Errorf("%s: %v; want deleted", n, err)
		}
	}
	for _, n := range theirs {
		if _, err := os.Stat(filepath.Join(dir, n)); err != nil {
			t.Errorf("%s: %v; want left alone", n, err)
		}
	}
}

// TestSpoolFilesPrivate: the spool directory the relay creates, its WAL
// directory, WAL segments and spool files are its user's only: they hold
// whole prompts and answers (they were readable by every local user).
func TestSpoolFilesPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	w := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
	w.Write(sseRecord(1, 2))
	segs := walFiles(t, dir)
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	check := func(path string, want os.FileMode) {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v; want %v", path, got, want)
		}
	}
	check(dir, 0o700)
	check(filepath.Join(dir, "wal"), 0o700)
	check(segs[0], 0o600)
	closeWriter(t, w)
	names := spoolNames(t, dir)
	if len(names) != 1 {
		t.Fatalf("spool %v", names)
	}
	check(filepath.Join(dir, names[0]), 0o600)
}
