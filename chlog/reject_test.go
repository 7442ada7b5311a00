package chlog

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// spoolLog collects a writer's log lines (text format) for counting.
type spoolLog struct{ servicetest.Buffer }

func (l *spoolLog) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lines returns the lines at level that contain every one of subs.
func (l *spoolLog) lines(level string, subs ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if !strings.Contains(line, "level="+level) {
			continue
		}
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

func writeSpoolFile(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func nameOf(m blockMeta) string { return spoolName(m.seq, m.rows, false, m.first[:], m.last[:]) }

// TestRejectBadSpoolFiles: broken files at the head of the spool (random
// bytes, empty, a torn write, a row count that does not match the name, a
// name that is no spool name, a block the server refuses) are moved to
// rejected/ with their reason, counted and logged once each; the good files
// behind them are inserted; other files are left alone.
func TestRejectBadSpoolFiles(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	log := &spoolLog{}

	mRandom, _ := spoolTestBlock(t, 10, 0, 4)
	writeSpoolFile(t, dir, nameOf(mRandom), []byte("\x8f\x12 random bytes where a Native block should be \xff\xfe\x00\x01 0123456789"))
	mEmpty, _ := spoolTestBlock(t, 11, 10, 3)
	writeSpoolFile(t, dir, nameOf(mEmpty), nil)
	mTorn, torn := spoolTestBlock(t, 12, 20, 5)
	writeSpoolFile(t, dir, nameOf(mTorn), torn[:len(torn)*2/3])
	mShort, short := spoolTestBlock(t, 13, 30, 2)
	mShort.rows = 7 // the name claims more rows than the file holds
	writeSpoolFile(t, dir, nameOf(mShort), short)
	_, renamed := spoolTestBlock(t, 14, 40, 2)
	writeSpoolFile(t, dir, "copied-by-hand.native", renamed)
	mGood1, good1 := spoolTestBlock(t, 15, 50, 6)
	writeSpoolFile(t, dir, nameOf(mGood1), good1)
	// Two blocks in one file (a group commit): valid.
	mGood2a, good2a := spoolTestBlock(t, 16, 60, 3)
	mGood2b, good2b := spoolTestBlock(t, 16, 70, 4)
	mGood2 := blockMeta{seq: 16, rows: 7, first: mGood2a.first, last: mGood2b.last}
	writeSpoolFile(t, dir, nameOf(mGood2), append(append([]byte(nil), good2a...), good2b...))
	writeSpoolFile(t, dir, "README.txt", []byte("an operator's note"))

	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 50 * time.Millisecond, Logger: log.logger()})
	defer closeWriter(t, w)
	waitFor(t, "spool drained", 20*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })

	if n := count(t, chURL, db); n != 6+7 {
		t.Errorf("%d rows in ClickHouse; want 13 (the good files)", n)
	}
	bad := []struct {
		name, reason string
		rows         int
	}{
		{nameOf(mRandom), "not a Native block", 4},
		{nameOf(mEmpty), "empty file", 3},
		{nameOf(mTorn), "cut short", 5},
		{nameOf(mShort), "holds 2 rows; its name says 7", 7},
		{"copied-by-hand.native", "not a spool name", 2},
	}
	wantRows := 0
	for _, b := range bad {
		wantRows += b.rows
		if _, err := os.Stat(filepath.Join(dir, rejectedDir, b.name)); err != nil {
			t.Errorf("%s not in rejected/: %v", b.name, err)
		}
		reason, err := os.ReadFile(filepath.Join(dir, rejectedDir, errorFileName(b.name)))
		if err != nil || !strings.Contains(string(reason), b.reason) {
			t.Errorf("%s: reason %q (%v); want it to say %q", b.name, reason, err, b.reason)
		}
		if n := len(log.lines("ERROR", "spool file rejected", b.name)); n != 1 {
			t.Errorf("%s: %d error lines; want 1", b.name, n)
		}
	}
	if st := w.Stats(); st.RowsRejected != int64(wantRows) || st.RowsReplayed != 13 || st.Blocked != 0 {
		t.Errorf("stats %+v; want %d rows rejected, 13 replayed", st, wantRows)
	}
	if _, err := os.Stat(filepath.Join(dir, "README.txt")); err != nil {
		t.Errorf("a file that is no spool file was touched: %v", err)
	}
	ents, err := ListSpool(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != len(bad) {
		t.Errorf("ListSpool: %d entries; want the %d rejected files: %+v", len(ents), len(bad), ents)
	}
	for _, e := range ents {
		if !e.Rejected || e.Reason == "" {
			t.Errorf("ListSpool entry %+v: want rejected with a reason", e)
		}
	}
}

// TestRejectByServer: a file that verifies here but that the server refuses
// as broken (a column type 18.16 does not know) is rejected with the
// server's text; the file behind it is inserted.
func TestRejectByServer(t *testing.T) {
	chURL, db := testDB(t)
	skipUnlessBoolUnknown(t, chURL)
	dir := t.TempDir()
	log := &spoolLog{}
	mBool, withBool := refusedTestBlock(t, 20, 0, 3)
	writeSpoolFile(t, dir, nameOf(mBool), withBool)
	mGood, good := spoolTestBlock(t, 21, 10, 4)
	writeSpoolFile(t, dir, nameOf(mGood), good)
	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 50 * time.Millisecond, Logger: log.logger()})
	defer closeWriter(t, w)
	waitFor(t, "spool drained", 20*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	reason, err := os.ReadFile(filepath.Join(dir, rejectedDir, errorFileName(nameOf(mBool))))
	if err != nil || !strings.Contains(string(reason), "Unknown data type family: Bool") {
		t.Errorf("reason %q (%v); want the server's text", reason, err)
	}
	if n := count(t, chURL, db); n != 4 {
		t.Errorf("%d rows; want 4", n)
	}
	if st := w.Stats(); st.RowsRejected != 3 {
		t.Errorf("stats %+v; want 3 rows rejected", st)
	}
	if n := len(log.lines("ERROR", "spool file rejected")); n != 1 {
		t.Errorf("%d rejection lines; want 1", n)
	}
}

// TestBlockedOnSchemaError: a column's type changed under the relay makes
// every insert fail with a schema error. The queue holds (nothing is
// rejected), relay_storage_blocked is 1, the error line naming the column
// comes once however often the replay fails within a minute; after the
// table is fixed every row is stored and the gauge is 0 again.
func TestBlockedOnSchemaError(t *testing.T) {
	chURL, db := testDB(t)
	log := &spoolLog{}
	w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: 50 * time.Millisecond, Retries: -1, Logger: log.logger()})
	defer closeWriter(t, w)
	mustQuery(t, chURL, db, "ALTER TABLE stream_logs MODIFY COLUMN instance UInt32")
	for i := range 10 {
		w.Write(sseRecord(i, 3))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	_ = w.Flush(ctx) // fails: the block goes to the spool
	cancel()
	waitFor(t, "blocked gauge", 20*time.Second, func() bool { return w.Stats().Blocked == 1 })
	// Let the replayer fail a few more times (backoff 0.8s, 1.6s, 3.2s).
	start := w.Stats().InsertErrors
	waitFor(t, "three more failed replays", 30*time.Second, func() bool { return w.Stats().InsertErrors >= start+3 })
	loud := log.lines("ERROR", "queue is blocked")
	if len(loud) != 1 {
		t.Fatalf("%d blocked error lines after %d failed inserts; want 1:\n%s", len(loud), w.Stats().InsertErrors, strings.Join(loud, "\n"))
	}
	if !strings.Contains(loud[0], "instance (table UInt32, block String)") {
		t.Errorf("the line does not name the column and both types: %s", loud[0])
	}
	if st := w.Stats(); st.RowsRejected != 0 || st.SpoolFiles == 0 || st.Blocked != 1 {
		t.Errorf("stats %+v; want the block held in the spool, nothing rejected", st)
	}
	mustQuery(t, chURL, db, "ALTER TABLE stream_logs MODIFY COLUMN instance String")
	waitFor(t, "spool drained after the fix", 60*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	if st := w.Stats(); st.Blocked != 0 || st.RowsReplayed != 10 {
		t.Errorf("stats %+v; want blocked 0 and 10 rows replayed", st)
	}
	if n := count(t, chURL, db); n != 10 {
		t.Errorf("%d rows; want 10", n)
	}
}

func TestVerifySpool(t *testing.T) {
	m1, b1 := spoolTestBlock(t, 1, 0, 3)
	m2, b2 := spoolTestBlock(t, 1, 10, 2)
	both := append(append([]byte(nil), b1...), b2...)
	file := func(m blockMeta) spoolFile { return parseMust(t, nameOf(m)) }
	tests := []struct {
		name string
		data []byte
		f    spoolFile
		want string // "" = valid
	}{
		{"one block", b1, file(m1), ""},
		{"two blocks", both, file(blockMeta{seq: 1, rows: 5, first: m1.first, last: m2.last}), ""},
		{"empty", nil, file(m1), "empty file"},
		{"cut in the last block", both[:len(both)-3], file(blockMeta{seq: 1, rows: 5, first: m1.first, last: m2.last}), "native block 1"},
		{"cut at a block boundary", b1, file(blockMeta{seq: 1, rows: 5, first: m1.first, last: m2.last}), "holds 3 rows; its name says 5"},
		{"ids differ", b1, file(blockMeta{seq: 1, rows: 3, first: m2.first, last: m1.last}), "first and last request_id"},
		{"random", []byte("\x05\x03\x09request_id\x06String\x03abc"), file(m1), "not a Native block"},
		{"end marker only", []byte{0, 0}, file(m1), "no rows"},
	}
	for _, tt := range tests {
		_, _, err := verifySpool(tt.data, tt.f)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("%s: %v; want valid", tt.name, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("%s: %v; want an error saying %q", tt.name, err, tt.want)
		}
	}
}

// FuzzVerifySpool: hostile bytes in a spool file never panic the replayer
// and never pass as a file of some other row count.
func FuzzVerifySpool(f *testing.F) {
	_, b := spoolTestBlock(f, 1, 0, 2)
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte{})
	f.Add([]byte{1, 1, 1, 'a', 5, 'A', 'r', 'r', 'a', 'y'})
	f.Add([]byte("00\xe7\xe7\xe7\xe7\xe70")) // a column name of ~1.6 TB: the decoder ran out of memory
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, err := verifySpool(data, spoolFile{rows: 1 << 30}); err == nil {
			t.Fatalf("%d bytes verify as 2^30 rows", len(data))
		}
	})
}

// tcpProxy forwards connections on addr to target once started: before
// Start nothing listens there (connection refused, like a server that is
// down).
type tcpProxy struct {
	addr, target string
	ln           net.Listener
	wg           sync.WaitGroup
}

func (p *tcpProxy) Start(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				defer c.Close()
				u, err := net.Dial("tcp", p.target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); _ = u.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
}

// TestCorruptHeadServerDownThenBack is the scenario: a random-bytes
// file and an empty file at the head of the spool, the writer started while
// ClickHouse is unreachable, rows written, then ClickHouse comes back:
// every row is stored within seconds and the bad files are in rejected/.
func TestCorruptHeadServerDownThenBack(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	writeSpoolFile(t, dir, spoolName(1, 8, false, []byte("00000000aaaa"), []byte("00000000bbbb")), []byte("\x13\x37 random bytes \xde\xad\xbe\xef"))
	writeSpoolFile(t, dir, spoolName(2, 3, false, []byte("00000000cccc"), []byte("00000000dddd")), nil)
	u, err := url.Parse(chURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &tcpProxy{addr: strings.TrimPrefix(closedPortURL(t), "http://"), target: u.Host}
	w := newWriter(t, Options{URL: "http://" + proxy.addr, Database: db, SpoolDir: dir, FlushInterval: 100 * time.Millisecond, BatchRows: 4})
	defer closeWriter(t, w)
	for i := range 8 {
		w.Write(sseRecord(i, 3))
		time.Sleep(50 * time.Millisecond)
	}
	if st := w.Stats(); st.RowsWritten != 0 {
		t.Fatalf("rows written while ClickHouse was down: %+v", st)
	}
	proxy.Start(t)
	back := time.Now()
	for i := 8; i < 12; i++ { // traffic goes on
		w.Write(sseRecord(i, 3))
	}
	waitFor(t, "every row stored", 30*time.Second, func() bool {
		n, err := chQuery(chURL, db, "SELECT count() FROM stream_logs")
		return err == nil && strings.TrimSpace(n) == "12"
	})
	t.Logf("all 12 rows stored %v after ClickHouse came back", time.Since(back).Round(10*time.Millisecond))
	waitFor(t, "spool drained", 10*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	ents, err := os.ReadDir(filepath.Join(dir, rejectedDir))
	if err != nil || len(ents) != 4 {
		t.Errorf("rejected/: %d files (%v); want the two bad files and their reasons", len(ents), err)
	}
	if st := w.Stats(); st.RowsRejected != 11 || st.RowsDropped != 0 {
		t.Errorf("stats %+v; want 11 rows rejected (as the names say), none dropped", st)
	}
}

// TestLateSchemaMismatchBlocks: ClickHouse down at start, its table of
// another type when it answers: the queue is blocked (the gauge, an error
// line) rather than "still unreachable", and moves on once the table is
// fixed.
func TestLateSchemaMismatchBlocks(t *testing.T) {
	chURL, db := testDB(t)
	closeWriter(t, newWriter(t, Options{URL: chURL, Database: db})) // the table
	mustQuery(t, chURL, db, "ALTER TABLE stream_logs MODIFY COLUMN status String")
	u, err := url.Parse(chURL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := &tcpProxy{addr: strings.TrimPrefix(closedPortURL(t), "http://"), target: u.Host}
	var logs servicetest.Buffer
	w := newWriter(t, Options{URL: "http://" + proxy.addr, Database: db, FlushInterval: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer closeWriter(t, w)
	w.Write(sseRecord(1, 3))
	w.Write(sseRecord(2, 3))
	proxy.Start(t)
	waitFor(t, "the blocked gauge", 30*time.Second, func() bool { return w.Stats().Blocked == 1 })
	if out := logs.String(); !strings.Contains(out, "the table does not take the relay's rows") || !strings.Contains(out, "status") {
		t.Errorf("no error line naming the column:\n%s", out)
	}
	mustQuery(t, chURL, db, "ALTER TABLE stream_logs MODIFY COLUMN status UInt16")
	waitFor(t, "the rows", 30*time.Second, func() bool { st := w.Stats(); return st.RowsReplayed == 2 && st.Blocked == 0 })
}

// TestVerifySpoolTrailingBytes: bytes after whole blocks that hold the rows
// the file's name says (first and last id too) are not the relay's: the
// rows are kept without them. Fewer rows before the stray bytes stay an
// error (a torn file).
func TestVerifySpoolTrailingBytes(t *testing.T) {
	m1, b1 := spoolTestBlock(t, 1, 0, 3)
	m2, b2 := spoolTestBlock(t, 1, 10, 2)
	both := append(append([]byte(nil), b1...), b2...)
	five := parseMust(t, nameOf(blockMeta{seq: 1, rows: 5, first: m1.first, last: m2.last}))
	junk := bytes.Repeat([]byte{0xfe, 0x07, 'x'}, 1000)
	for _, tc := range []struct {
		name     string
		data     []byte
		f        spoolFile
		keep     int // bytes kept; -1: an error
		trailing int
	}{
		{"a newline after one block", append(append([]byte(nil), b1...), '\n'), parseMust(t, nameOf(m1)), len(b1), 1},
		{"3000 bytes after two blocks", append(append([]byte(nil), both...), junk...), five, len(both), len(junk)},
		{"stray bytes after 3 of 5 rows", append(append([]byte(nil), b1...), junk...), five, -1, 0},
		{"whole", both, five, len(both), 0},
	} {
		kept, trailing, err := verifySpool(tc.data, tc.f)
		switch {
		case tc.keep < 0 && err == nil:
			t.Errorf("%s: verifies (%d bytes kept); want an error", tc.name, len(kept))
		case tc.keep >= 0 && (err != nil || len(kept) != tc.keep || trailing != tc.trailing || !bytes.Equal(kept, tc.data[:tc.keep])):
			t.Errorf("%s: %d bytes kept, %d trailing, %v; want %d, %d", tc.name, len(kept), trailing, err, tc.keep, tc.trailing)
		}
	}
}

// TestSpoolTrailingBytesReplayed: a spool file with a newline appended (an
// operator's editor, a stray echo >>) is replayed into ClickHouse, every
// row once; its rows were all rejected, and `relay spool replay -rejected`
// could not take them back either.
func TestSpoolTrailingBytesReplayed(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	down := newWriter(t, Options{URL: closedPortURL(t), Database: db, SpoolDir: dir, FlushInterval: time.Hour, Retries: -1})
	want := writeSSE(down, 30)
	_ = down.Flush(context.Background())
	closeWriter(t, down)
	names := spoolNames(t, dir)
	if len(names) == 0 {
		t.Fatal("nothing spooled")
	}
	for _, n := range names {
		f, err := os.OpenFile(filepath.Join(dir, n), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.Write([]byte("\n"))
		_ = f.Close()
	}
	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 50 * time.Millisecond})
	waitFor(t, "spool drained", 30*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	closeWriter(t, w)
	if st := w.Stats(); st.RowsRejected != 0 || st.RowsReplayed != int64(len(want)) {
		t.Fatalf("stats %+v; want %d rows replayed, none rejected", st, len(want))
	}
	if n := count(t, chURL, db); n != len(want) {
		t.Fatalf("%d rows in ClickHouse; want %d", n, len(want))
	}
}

// TestListSpoolRejectedTrailingBytes: relay spool ls -verify on a file set
// aside in rejected/ that verifies now (a newline appended) keeps its
// rejection's reason and says it verifies; the reason was replaced by one
// saying its rows "are sent", which a rejected file's are not.
func TestListSpoolRejectedTrailingBytes(t *testing.T) {
	m1, b1 := spoolTestBlock(t, 1, 0, 3)
	dir := t.TempDir()
	rdir := filepath.Join(dir, rejectedDir)
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		t.Fatal(err)
	}
	name := nameOf(m1)
	if err := os.WriteFile(filepath.Join(rdir, name), append(append([]byte(nil), b1...), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rdir, errorFileName(name)), []byte("ClickHouse refused the block: Code: 33\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ents, err := ListSpool(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || !strings.HasPrefix(ents[0].Reason, "ClickHouse refused the block: Code: 33") || !strings.Contains(ents[0].Reason, "verifies now") {
		t.Fatalf("%+v; want the rejection's reason kept, saying it verifies now", ents)
	}
}
