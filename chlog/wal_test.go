package chlog

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func walFiles(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "wal", "*"+walExt))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestWALCrash abandons a writer without Close (its goroutines never send:
// the flush interval is an hour) and starts another on the same spool.
func TestWALCrash(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	crashed := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour, BatchRows: 7})
	want := map[string]bool{}
	for i := range 20 { // two full blocks inserted, six rows only in the WAL
		r := sseRecord(i, 3)
		want[string(r.ID[:])] = true
		crashed.Write(r)
	}
	waitFor(t, "two blocks inserted", 10*time.Second, func() bool { return crashed.Stats().RowsWritten == 14 })
	waitFor(t, "their segments deleted", 10*time.Second, func() bool { return len(walFiles(t, dir)) == 1 })

	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: 50 * time.Millisecond})
	waitFor(t, "WAL replay", 20*time.Second, func() bool { return w.Stats().RowsReplayed == 6 })
	closeWriter(t, w)
	assertExactlyOnce(t, chURL, db, want)
	if f := walFiles(t, dir); len(f) != 0 {
		t.Fatalf("WAL segments left: %v", f)
	}
}

// TestWALCrashAfterInsert covers the window between a block's insert and its
// segment's deletion: the recovered rows must not be inserted twice.
func TestWALCrashAfterInsert(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	crashed := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
	want := map[string]bool{}
	for i := range 5 {
		r := sseRecord(i, 3)
		want[string(r.ID[:])] = true
		crashed.Write(r)
	}
	segs := walFiles(t, dir)
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	saved, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	flush(t, crashed)
	waitFor(t, "segment deleted", 10*time.Second, func() bool { return len(walFiles(t, dir)) == 0 })
	if err := os.WriteFile(segs[0], saved, 0o644); err != nil { // as if the crash came first
		t.Fatal(err)
	}

	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: 50 * time.Millisecond})
	waitFor(t, "spool drained", 20*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	r := sseRecord(9, 3)
	want[string(r.ID[:])] = true
	w.Write(r)
	closeWriter(t, w)
	assertExactlyOnce(t, chURL, db, want)
}

// TestWALTornTail cuts a half-written last record.
func TestWALTornTail(t *testing.T) {
	dir := t.TempDir()
	crashed := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
	for i := range 3 {
		crashed.Write(sseRecord(i, 2))
	}
	segs := walFiles(t, dir)
	data, _ := os.ReadFile(segs[0])
	if err := os.WriteFile(segs[0], data[:len(data)-10], 0o644); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL})
	closeWriter(t, w)
	names := spoolNames(t, dir)
	if len(names) != 1 || parseMust(t, names[0]).rows != 2 || !parseMust(t, names[0]).unknown {
		t.Fatalf("spool %v; want one u-file of 2 rows", names)
	}
}
