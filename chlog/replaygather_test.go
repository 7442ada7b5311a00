package chlog

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// insertLog records the writer's insert attempts (Options.OnInsert).
type insertLog struct {
	mu      sync.Mutex
	ok      []int // rows of each insert that went in
	refused int
}

func (l *insertLog) record(_ time.Duration, rows int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.refused++
		return
	}
	l.ok = append(l.ok, rows)
}

func (l *insertLog) snapshot() ([]int, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]int(nil), l.ok...), l.refused
}

// TestReplayGathersFiles: a spool of several files drains in one insert
// (each insert is a part on the server), every row arrives once and every
// file is deleted.
func TestReplayGathersFiles(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	want := 0
	for i := range 6 {
		m, data := spoolTestBlock(t, uint64(30+i), 100*i, 5+i)
		writeSpoolFile(t, dir, nameOf(m), data)
		want += m.rows
	}
	ins := &insertLog{}
	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 50 * time.Millisecond, OnInsert: ins.record})
	defer closeWriter(t, w)
	waitFor(t, "spool drained", 30*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	if n := count(t, chURL, db); n != want {
		t.Errorf("%d rows in ClickHouse; want %d", n, want)
	}
	if ok, refused := ins.snapshot(); len(ok) != 1 || ok[0] != want || refused != 0 {
		t.Errorf("inserts %v (rows each), %d refused; want one insert of %d rows", ok, refused, want)
	}
	if st := w.Stats(); st.RowsReplayed != int64(want) {
		t.Errorf("stats %+v; want %d rows replayed", st, want)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"+spoolExt))
	if len(left) != 0 {
		t.Errorf("files left in the spool: %v", left)
	}
}

// TestReplayGatheredRefusal: a file the server refuses among gathered files
// fails their insert once; the files of that insert then go one an insert,
// so that only the refused one is moved aside, and every other row arrives.
func TestReplayGatheredRefusal(t *testing.T) {
	chURL, db := testDB(t)
	skipUnlessBoolUnknown(t, chURL)
	dir := t.TempDir()
	want := 0
	var bad blockMeta
	for i := range 7 {
		if i == 3 {
			m, data := refusedTestBlock(t, uint64(40+i), 100*i, 4)
			writeSpoolFile(t, dir, nameOf(m), data)
			bad = m
			continue
		}
		m, data := spoolTestBlock(t, uint64(40+i), 100*i, 4)
		writeSpoolFile(t, dir, nameOf(m), data)
		want += m.rows
	}
	ins := &insertLog{}
	log := &spoolLog{}
	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 50 * time.Millisecond, OnInsert: ins.record, Logger: log.logger()})
	defer closeWriter(t, w)
	waitFor(t, "spool drained", 30*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	if n := count(t, chURL, db); n != want {
		t.Errorf("%d rows in ClickHouse; want %d", n, want)
	}
	if _, err := os.Stat(filepath.Join(dir, rejectedDir, nameOf(bad))); err != nil {
		t.Errorf("the refused file is not in rejected/: %v", err)
	}
	ok, refused := ins.snapshot()
	// The gathered insert of all seven, then the refused file alone.
	if refused != 2 {
		t.Errorf("%d refused inserts; want 2 (the gathered one, then the file alone)", refused)
	}
	if len(ok) != 6 {
		t.Errorf("inserts %v; want the 6 good files one an insert", ok)
	}
	if st := w.Stats(); st.RowsRejected != int64(bad.rows) || st.RowsReplayed != int64(want) {
		t.Errorf("stats %+v; want %d rejected, %d replayed", st, bad.rows, want)
	}
	if n := len(log.lines("INFO", "gathered insert was refused")); n != 1 {
		t.Errorf("%d lines about the refused gathered insert; want 1", n)
	}
}
