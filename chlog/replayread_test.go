package chlog

import (
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestReplayReadOutOfFDs: a spool file the replayer cannot read for a
// moment (the process out of file descriptors: a surge of connections) is
// read again later and inserted; it was moved to rejected/ as one that can
// never be inserted, its rows counted rejected and never sent.
func TestReplayReadOutOfFDs(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	embedded := newWriter(t, Options{SpoolDir: dir, FlushInterval: time.Hour})
	want := map[string]bool{}
	for i := range 3 {
		r := sseRecord(i, 2)
		want[string(r.ID[:])] = true
		embedded.Write(r)
	}
	closeWriter(t, embedded)
	if n := len(spoolNames(t, dir)); n != 1 {
		t.Fatalf("%d spool files; want 1", n)
	}

	var fails atomic.Int32
	fails.Store(2)
	readSpoolFile = func(name string) ([]byte, error) {
		if fails.Add(-1) >= 0 {
			return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EMFILE}
		}
		return os.ReadFile(name)
	}
	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 50 * time.Millisecond})
	defer func() { readSpoolFile = os.ReadFile }()
	waitFor(t, "spool replayed", 30*time.Second, func() bool { return w.Stats().RowsReplayed == 3 })
	closeWriter(t, w)
	if st := w.Stats(); st.RowsRejected != 0 || fails.Load() >= 0 {
		t.Fatalf("stats %+v, reads failed %d; want both failed reads retried, nothing rejected", st, 2-max(fails.Load(), 0))
	}
	assertExactlyOnce(t, chURL, db, want)
}
