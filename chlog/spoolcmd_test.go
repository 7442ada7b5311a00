package chlog

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReplaySpool: relay spool replay's engine sends the queue in order,
// rejects what cannot be inserted and prints a line per file; with
// rejected it puts a rejected file that verifies back and sends it.
func TestReplaySpool(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	mBad, _ := spoolTestBlock(t, 1, 0, 4)
	writeSpoolFile(t, dir, nameOf(mBad), []byte("not a block"))
	mGood, good := spoolTestBlock(t, 2, 10, 5)
	writeSpoolFile(t, dir, nameOf(mGood), good)
	writeSpoolFile(t, dir, "stray.native", []byte("x"))
	// A good file an operator had set aside.
	mAside, aside := spoolTestBlock(t, 3, 20, 3)
	if err := os.MkdirAll(filepath.Join(dir, rejectedDir), 0o755); err != nil {
		t.Fatal(err)
	}
	writeSpoolFile(t, filepath.Join(dir, rejectedDir), nameOf(mAside), aside)
	writeSpoolFile(t, filepath.Join(dir, rejectedDir), errorFileName(nameOf(mAside)), []byte("set aside by hand\n"))
	// A damaged WAL segment recovery kept (walscan.go): listed, not replayed.
	writeSpoolFile(t, filepath.Join(dir, rejectedDir), "00000000000000000007"+walExt, []byte("damaged"))
	writeSpoolFile(t, filepath.Join(dir, rejectedDir), errorFileName("00000000000000000007"+walExt), []byte("wal segment damaged\nmore\n"))

	ents, err := ListSpool(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.File+" "+e.Reason)
	}
	want := []string{
		nameOf(mBad) + " will be rejected: not a Native block: native block 0: column 0 name: cut short",
		nameOf(mGood) + " ",
		"stray.native will be rejected: file name is not a spool name",
		nameOf(mAside) + " set aside by hand",
		"00000000000000000007" + walExt + " wal segment damaged",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ListSpool:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if e := ents[1]; e.Rows != 5 || e.First != quoteID(mGood.first[:]) || e.Last != quoteID(mGood.last[:]) || e.Bytes != int64(len(good)) || e.Rejected {
		t.Errorf("queued entry %+v", e)
	}

	var out bytes.Buffer
	o := Options{URL: chURL, Database: db, SpoolDir: dir, Logger: testLogger(t)}
	sum, err := ReplaySpool(context.Background(), o, false, &out)
	t.Logf("replay:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if sum != (ReplaySummary{Inserted: 1, InsertedRows: 5, Rejected: 2}) {
		t.Errorf("summary %+v", sum)
	}
	for _, s := range []string{"rejected  stray.native", "rejected  " + nameOf(mBad), "inserted  " + nameOf(mGood) + "  rows=5"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if n := count(t, chURL, db); n != 5 {
		t.Errorf("%d rows; want 5", n)
	}

	out.Reset()
	sum, err = ReplaySpool(context.Background(), o, true, &out)
	t.Logf("replay --rejected:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if sum != (ReplaySummary{Inserted: 1, InsertedRows: 3, Restored: 1, Kept: 2}) {
		t.Errorf("summary %+v", sum)
	}
	if n := count(t, chURL, db); n != 8 {
		t.Errorf("%d rows; want 8", n)
	}
	if _, err := os.Stat(filepath.Join(dir, rejectedDir, errorFileName(nameOf(mAside)))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the restored file's reason is still there: %v", err)
	}
	ents, _ = ListSpool(dir, false)
	if len(ents) != 3 || !ents[0].Rejected || !ents[1].Rejected || !ents[2].Rejected || !strings.HasSuffix(ents[1].File, walExt) {
		t.Errorf("after replay: %+v; want the two bad files and the WAL copy in rejected/", ents)
	}
}

// TestReplaySpoolInUse: another process holding the spool (a running
// relay) makes replay refuse instead of sending the files twice.
func TestReplaySpoolInUse(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("no flock(1)")
	}
	dir := t.TempDir()
	// flock(1) takes the same kind of lock (flock(2)) on the same file.
	cmd := exec.Command(flock, "-x", filepath.Join(dir, spoolLockName), "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitFor(t, "flock(1) holds the lock", 10*time.Second, func() bool {
		f, err := os.Open(filepath.Join(dir, spoolLockName))
		if err != nil {
			return false
		}
		defer f.Close()
		return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil
	})
	_, err = ReplaySpool(context.Background(), Options{URL: closedPortURL(t), SpoolDir: dir, Logger: testLogger(t)}, false, &bytes.Buffer{})
	if !errors.Is(err, ErrSpoolInUse) {
		t.Fatalf("ReplaySpool: %v; want ErrSpoolInUse", err)
	}
}

// TestSpoolLockReleasedOnClose: a writer holds its spool directory against
// other processes while it runs and lets go of it when closed.
func TestSpoolLockReleasedOnClose(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("no flock(1)")
	}
	chURL, db := testDB(t)
	dir := t.TempDir()
	tryLock := func() error {
		return exec.Command(flock, "-n", filepath.Join(dir, spoolLockName), "true").Run()
	}
	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 50 * time.Millisecond})
	w2 := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 50 * time.Millisecond}) // same process: shares it
	if err := tryLock(); err == nil {
		t.Fatal("another process took the lock of a running writer's spool")
	}
	closeWriter(t, w)
	if err := tryLock(); err == nil {
		t.Fatal("the lock went with the first of two writers")
	}
	closeWriter(t, w2)
	if err := tryLock(); err != nil {
		t.Fatalf("the lock is still held after Close: %v", err)
	}
}

// TestSpoolDirMissing: a spool directory that does not exist is missing
// (nothing spooled yet) and no error; one that exists is not missing; a
// path that is a file, or lies under one, is an error naming it.
func TestSpoolDirMissing(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeSpoolFile(t, dir, "file", []byte("x"))
	for _, tt := range []struct {
		path    string
		missing bool
		err     string
	}{
		{filepath.Join(dir, "nope"), true, ""},
		{filepath.Join(dir, "nope", "deeper"), true, ""},
		{dir, false, ""},
		{file, false, "not a directory"},
		{filepath.Join(file, "sub"), false, "not a directory"},
	} {
		missing, err := SpoolDirMissing(tt.path)
		if missing != tt.missing {
			t.Errorf("%s: missing %v, want %v", tt.path, missing, tt.missing)
		}
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v, want no error", tt.path, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), tt.path)):
			t.Errorf("%s: %v, want an error naming the path and saying %q", tt.path, err, tt.err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nope")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("looking created the directory: %v", err)
	}
}

// TestListSpoolWALAlreadyQueued: a WAL segment whose rows a queued file
// holds (a crash between spooling them and deleting the segment) is listed
// as such, not as rows still to queue: relay spool ls counted them twice.
func TestListSpoolWALAlreadyQueued(t *testing.T) {
	dir := t.TempDir()
	_, seg := crashedWAL(t, dir, 3, 2)
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	walRecovered(t, dir)                                   // the rows go into a spool file, the segment goes
	if err := os.WriteFile(seg, data, 0o600); err != nil { // as if the crash came before its delete
		t.Fatal(err)
	}
	ents, err := ListSpool(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	var queued, wal int
	for _, e := range ents {
		switch {
		case e.WAL && !e.Spooled:
			t.Errorf("segment %s listed as rows still to queue; its rows are queued", e.File)
		case e.WAL:
			wal++
		case !e.Rejected:
			queued += e.Rows
		}
	}
	if queued != 3 || wal != 1 {
		t.Errorf("queued rows %d, segments already queued %d; want 3 and 1", queued, wal)
	}
}

// TestReplaySpoolDamagedWAL: relay spool replay recovering a crashed WAL
// segment with a damaged record says how many rows it could not recover
// (it printed a clean summary and exit 0: the loss was in the log alone);
// the others are inserted.
func TestReplaySpoolDamagedWAL(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	seg, data, _ := crashedSegment(t, Options{URL: closedPortURL(t), Database: db, SpoolDir: dir}, 3)
	flipPayload(data, walOffsets(t, data), 1)
	if err := os.WriteFile(seg, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	sum, err := ReplaySpool(context.Background(), Options{URL: chURL, Database: db, SpoolDir: dir, Logger: testLogger(t)}, false, &out)
	t.Logf("replay:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if sum.LostRows != 1 || sum.InsertedRows != 2 {
		t.Errorf("summary %+v, want 2 rows inserted and 1 lost", sum)
	}
	for _, s := range []string{"rejected  wal/  rows=1  damaged WAL records", ", 1 rows of damaged WAL records lost"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("output lacks %q", s)
		}
	}
}
