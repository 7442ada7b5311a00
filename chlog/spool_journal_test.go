package chlog

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReplayCutByCrashNotResent: a crash between a replay insert and the
// deletion of its files (kill -9 right after ClickHouse answered) leaves
// the files flagged "k". The journal the replayer wrote before the insert
// makes the next start flag them "u", so their rows are checked and not
// sent again. The crash is made by hand: the first two files' rows are
// inserted as the cut replay did, and the journal names the first file.
// Before the fix the start re-sent them unchecked: those rows twice (18.16
// has no insert_deduplication_token to drop the repeat).
func TestReplayCutByCrashNotResent(t *testing.T) {
	chURL, db := testDB(t)
	closeWriter(t, newWriter(t, Options{URL: chURL, Database: db})) // the table
	dir := t.TempDir()
	ew := newWriter(t, Options{SpoolDir: dir, FlushInterval: time.Hour})
	want := map[string]bool{}
	for f := range 3 {
		for i := range 4 {
			r := sseRecord(10*f+i, 2)
			want[string(r.ID[:])] = true
			_ = ew.Write(r)
		}
		flush(t, ew)
	}
	closeWriter(t, ew)
	names := spoolNames(t, dir)
	if len(names) != 3 {
		t.Fatalf("spool files %v, want 3", names)
	}
	for _, name := range names[:2] { // the cut insert had stored these
		native, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		postNative(t, chURL, db+".stream_logs", native)
	}
	if err := os.WriteFile(filepath.Join(dir, replayJournalName), []byte(names[0]+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 100 * time.Millisecond})
	defer closeWriter(t, w)
	waitFor(t, "the spool to drain", 60*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	assertExactlyOnce(t, chURL, db, want)
	if _, err := os.Stat(filepath.Join(dir, replayJournalName)); !os.IsNotExist(err) {
		t.Errorf("the journal is still there after the replay (%v)", err)
	}
}

// TestReplayWritesJournal: while a replay insert runs, the journal names
// its first file; once the pass is over it is gone.
func TestReplayWritesJournal(t *testing.T) {
	chURL, db := testDB(t)
	closeWriter(t, newWriter(t, Options{URL: chURL, Database: db})) // the table
	dir := t.TempDir()
	want, name := spoolOneFile(t, dir, 4)
	p, proxyURL := newCutProxy(t, chURL)
	p.mode.Store(hangInsert)
	w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: dir, FlushInterval: 100 * time.Millisecond, InsertTimeout: 2 * time.Second})
	defer closeWriter(t, w)
	journal := filepath.Join(dir, replayJournalName)
	waitFor(t, "a replay insert under way", 60*time.Second, func() bool { return p.sent.Load() > 0 })
	if b, err := os.ReadFile(journal); err != nil || string(b) != name+"\n" {
		t.Fatalf("journal during the insert: %q, %v; want the file's name", b, err)
	}
	p.mode.Store(passThrough)
	waitFor(t, "the spool to drain", 60*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	assertExactlyOnce(t, chURL, db, want)
	waitFor(t, "the journal removed", 30*time.Second, func() bool {
		_, err := os.Stat(journal)
		return os.IsNotExist(err)
	})
}
