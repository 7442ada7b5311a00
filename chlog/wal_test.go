package chlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
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

// walRecovered crashes nothing itself: it opens a writer on dir (embedded),
// which turns leftover WAL segments into spool files, and returns the ids
// those files hold. Every file must decode whole.
func walRecovered(t *testing.T, dir string) map[string]bool {
	t.Helper()
	w := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL})
	closeWriter(t, w)
	ids := map[string]bool{}
	for _, r := range spooledRowList(t, dir) {
		ids[r.RequestID] = true
	}
	return ids
}

// failFsyncs makes the next n WAL fsyncs fail (n is changed by the test
// while the writer runs).
func failFsyncs(t *testing.T) *atomic.Int32 {
	var n atomic.Int32
	walFsync = func(f *os.File) error {
		if n.Add(-1) >= 0 {
			return errors.New("injected fsync failure")
		}
		n.Store(0)
		return f.Sync()
	}
	t.Cleanup(func() { walFsync = (*os.File).Sync })
	return &n
}

// TestWALFsyncFails: rows whose fsync failed are reported to their writer
// (Write returns the error), counted and never taken for durable; rows
// before and after are, and a crash recovers exactly those, whole.
func TestWALFsyncFails(t *testing.T) {
	failNext := failFsyncs(t)
	dir := t.TempDir()
	crashed := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
	durable := map[string]bool{}
	write := func(i int, wantErr bool) {
		t.Helper()
		r := sseRecord(i, 2)
		id := string(r.ID[:])
		err := crashed.Write(r)
		if (err != nil) != wantErr {
			t.Fatalf("row %d: Write = %v; want error %v", i, err, wantErr)
		}
		if err == nil {
			durable[id] = true
		}
	}
	for i := range 3 {
		write(i, false)
	}
	for i := 3; i < 5; i++ {
		failNext.Store(1)
		write(i, true)
	}
	for i := 5; i < 7; i++ {
		write(i, false)
	}
	if got := crashed.Stats().WALErrors; got != 2 {
		t.Errorf("WALErrors = %d; want 2 (one per failed fsync)", got)
	}
	// crashed is abandoned without Close, like a crash.
	got := walRecovered(t, dir)
	if len(got) != len(durable) {
		t.Errorf("recovered %d rows; want the %d durable ones", len(got), len(durable))
	}
	for id := range durable {
		if !got[id] {
			t.Errorf("durable row %s not recovered", id)
		}
	}
}

// TestWALCutBackFails: when the segment cannot even be cut back after a
// failed fsync, the rest of its block is reported not durable; the next
// block's segment is fine again.
func TestWALCutBackFails(t *testing.T) {
	failNext := failFsyncs(t)
	w := newWriter(t, Options{SpoolDir: t.TempDir(), Durability: DurabilityWAL, FlushInterval: time.Hour})
	if err := w.Write(sseRecord(0, 2)); err != nil {
		t.Fatal(err)
	}
	failNext.Store(2) // the row's fsync and the cut-back's
	for i := 1; i < 3; i++ {
		if err := w.Write(sseRecord(i, 2)); err == nil {
			t.Fatalf("row %d: Write succeeded on a damaged segment", i)
		}
	}
	flush(t, w) // embedded: the block goes to the spool; a new segment starts
	if err := w.Write(sseRecord(3, 2)); err != nil {
		t.Fatalf("Write in a new segment: %v", err)
	}
	if got := w.Stats().WALErrors; got != 2 {
		t.Errorf("WALErrors = %d; want 2", got)
	}
	closeWriter(t, w)
}

// TestWALDiskFull fills a small tmpfs under the WAL (needs root and mount):
// a write that fails for lack of space is reported and counted, the segment
// stays readable, and once space is back rows are durable again.
func TestWALDiskFull(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=128k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s); TestWALFsyncFails covers the failure path", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 96<<10), 0o644); err != nil {
		t.Fatal(err)
	}

	crashed := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
	durable := map[string]bool{}
	failed := 0
	for i := range 200 {
		r := sseRecord(i, 4)
		id := string(r.ID[:])
		if err := crashed.Write(r); err != nil {
			failed++
			if !strings.Contains(err.Error(), "no space left") {
				t.Fatalf("Write: %v; want no space left", err)
			}
			if failed == 3 {
				break
			}
			continue
		}
		durable[id] = true
	}
	if failed == 0 || len(durable) == 0 {
		t.Fatalf("%d rows durable, %d failed; want both", len(durable), failed)
	}
	if got := crashed.Stats().WALErrors; got < int64(failed) {
		t.Errorf("WALErrors = %d; want >= %d", got, failed)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for i := 1000; i < 1003; i++ {
		r := sseRecord(i, 4)
		if err := crashed.Write(r); err != nil {
			t.Fatalf("Write after space came back: %v", err)
		}
		durable[string(r.ID[:])] = true
	}
	got := walRecovered(t, dir)
	for id := range durable {
		if !got[id] {
			t.Errorf("durable row %s not recovered", id)
		}
	}
	if len(got) != len(durable) {
		t.Errorf("recovered %d rows; want the %d durable ones", len(got), len(durable))
	}
}

// TestWALRecoverGroupCommit: a crash after a group commit wrote several
// blocks into one spool file but before their WAL segments were deleted.
// Recovery must find every block in that file and recover none of them a
// second time, whichever block the file is named for: its first, which
// can be the newer (a block cut at a tick, then older ones gathered behind
// it). Before the fix a file named for the newer block was not searched
// for the older one, whose rows were then recovered and stored twice.
func TestWALRecoverGroupCommit(t *testing.T) {
	for _, newerFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("newer first %v", newerFirst), func(t *testing.T) {
			recoverGroupCommit(t, newerFirst)
		})
	}
}

func recoverGroupCommit(t *testing.T, newerFirst bool) {
	dir := t.TempDir()
	var files []string
	for b := range 2 {
		w := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
		for i := range 3 {
			if err := w.Write(sseRecord(10*b+i, 2)); err != nil {
				t.Fatal(err)
			}
		}
		seg := walFiles(t, dir)
		if len(seg) != 1 {
			t.Fatalf("block %d: segments %v", b, seg)
		}
		data, err := os.ReadFile(seg[0])
		if err != nil {
			t.Fatal(err)
		}
		closeWriter(t, w)
		names := spoolNames(t, dir)
		files = append(files, names[len(names)-1])
		_ = os.WriteFile(filepath.Join(dir, "wal", filepath.Base(seg[0])+".saved"), data, 0o644)
	}
	// Join the two spool files as group commit would, then put the
	// segments back as if the crash came before their deletion.
	f0, f1 := parseMust(t, files[0]), parseMust(t, files[1])
	order := files
	group := spoolName(f0.seq, 6, false, []byte(f0.first), []byte(f1.last))
	if newerFirst {
		order = []string{files[1], files[0]}
		group = spoolName(f1.seq, 6, false, []byte(f1.first), []byte(f0.last))
	}
	var joined []byte
	for _, name := range order {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		joined = append(joined, data...)
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, group), joined, 0o644); err != nil {
		t.Fatal(err)
	}
	saved, _ := filepath.Glob(filepath.Join(dir, "wal", "*.saved"))
	if len(saved) != 2 {
		t.Fatalf("saved segments %v", saved)
	}
	for _, p := range saved {
		if err := os.Rename(p, strings.TrimSuffix(p, ".saved")); err != nil {
			t.Fatal(err)
		}
	}

	w := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
	closeWriter(t, w)
	if f := walFiles(t, dir); len(f) != 0 {
		t.Fatalf("WAL segments left: %v", f)
	}
	names := spoolNames(t, dir)
	if len(names) != 1 || names[0] != group {
		t.Fatalf("spool files %v; want only the group file %s", names, group)
	}
}

// TestWALRecoverOnlyWhatTheSpoolHolds: a leftover segment is dropped only
// when a spool file's request_id column holds its rows. It was dropped
// when any spool file's bytes held its first id (a captured body quoting
// it) or a spool file had its sequence number (another relay's, copied
// in): rows confirmed durable, lost.
func TestWALRecoverOnlyWhatTheSpoolHolds(t *testing.T) {
	for _, tt := range []string{"id quoted in a body", "same sequence number"} {
		t.Run(tt, func(t *testing.T) {
			dir := t.TempDir()
			a := sseRecord(1, 2)
			w := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
			b := sseRecord(2, 2)
			b.SetRequestBody(append([]byte(`{"note":"retry of `), append(a.ID[:], `"}`...)...)) // A's id, raw, in B's body
			if err := w.Write(b); err != nil {
				t.Fatal(err)
			}
			flush(t, w) // B spooled
			bFile := spoolNames(t, dir)[0]
			if err := w.Write(a); err != nil { // A durable in the WAL only
				t.Fatal(err)
			}
			seg := walFiles(t, dir)
			if len(seg) != 1 {
				t.Fatalf("segments %v", seg)
			}
			data, err := os.ReadFile(seg[0])
			if err != nil {
				t.Fatal(err)
			}
			closeWriter(t, w)
			// The crash: A's block never reached the spool, its segment stays.
			for _, n := range spoolNames(t, dir) {
				if n != bFile {
					_ = os.Remove(filepath.Join(dir, n))
				}
			}
			if err := os.WriteFile(seg[0], data, 0o644); err != nil {
				t.Fatal(err)
			}
			if tt == "same sequence number" {
				// B's file renamed to A's segment's sequence number, as a
				// file copied in from another relay could be named.
				f := parseMust(t, bFile)
				var aSeq uint64
				fmt.Sscanf(filepath.Base(seg[0]), "%d", &aSeq)
				if err := os.Rename(filepath.Join(dir, bFile), filepath.Join(dir, spoolName(aSeq, f.rows, false, []byte(f.first), []byte(f.last)))); err != nil {
					t.Fatal(err)
				}
			}
			w2 := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
			closeWriter(t, w2)
			found := false
			for _, n := range spoolNames(t, dir) {
				data, err := os.ReadFile(filepath.Join(dir, n))
				if err != nil {
					t.Fatal(err)
				}
				rows, err := DecodeRows(data)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rows {
					found = found || r.RequestID == quoteID(a.ID[:])
				}
			}
			if !found {
				t.Fatalf("row A, durable in the WAL, is in no spool file after recovery (files %v)", spoolNames(t, dir))
			}
		})
	}
}

// crashedWAL writes n rows of the given chunks through a writer with
// durability wal on dir, which is then abandoned (a crash: never closed),
// and returns the rows' ids and the one WAL segment that holds them.
func crashedWAL(t *testing.T, dir string, n, chunks int) (want map[string]bool, seg string) {
	t.Helper()
	crashed := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
	want = map[string]bool{}
	for i := range n {
		r := sseRecord(i, chunks)
		want[string(r.ID[:])] = true
		if err := crashed.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	segs := walFiles(t, dir)
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	return want, segs[0]
}

// TestWALSegmentRenamed: a segment whose name lost its leading zeros (an
// operator's copy, say) is recovered under its own name; looked for under
// the relay's, it failed the start.
func TestWALSegmentRenamed(t *testing.T) {
	dir := t.TempDir()
	want, seg := crashedWAL(t, dir, 3, 2)
	short := filepath.Join(filepath.Dir(seg), strings.TrimLeft(filepath.Base(seg), "0"))
	if err := os.Rename(seg, short); err != nil {
		t.Fatal(err)
	}
	got := walRecovered(t, dir)
	if len(got) != len(want) {
		t.Fatalf("recovered %d rows; want %d", len(got), len(want))
	}
	for id := range want {
		if !got[id] {
			t.Fatalf("row %q not recovered; got %v", id, got)
		}
	}
	if f := walFiles(t, dir); len(f) != 0 {
		t.Fatalf("WAL segments left: %v", f)
	}
}

// TestWALRecoveredWithoutWAL: a relay restarted with durability batch
// after one with wal crashed still moves the WAL's rows into the spool;
// it left them unread, for good.
func TestWALRecoveredWithoutWAL(t *testing.T) {
	dir := t.TempDir()
	want, _ := crashedWAL(t, dir, 3, 2)
	w := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityBatch})
	closeWriter(t, w)
	got := map[string]bool{}
	for _, r := range spooledRowList(t, dir) {
		got[r.RequestID] = true
	}
	if len(got) != len(want) {
		t.Fatalf("spooled %d rows; want the WAL's %d", len(got), len(want))
	}
	if f := walFiles(t, dir); len(f) != 0 {
		t.Fatalf("WAL segments left: %v", f)
	}
}

// TestWALZeroTailInsideRecord: a crash that kept a segment's length but
// not its last sectors leaves zeros from a sector boundary inside the last
// record: a torn tail (that row's Write never returned), cut without a
// rejected copy or a rejected row. It was counted as corruption.
func TestWALZeroTailInsideRecord(t *testing.T) {
	dir := t.TempDir()
	_, seg := crashedWAL(t, dir, 3, 20)
	data, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	last := 0
	for o := 0; o < len(data); o += walHeader + int(binary.LittleEndian.Uint32(data[o:])) {
		last = o
	}
	k := (last+walHeader)/walSector*walSector + walSector
	if k >= len(data) {
		t.Fatalf("last record at %d of %d bytes: no sector boundary inside it", last, len(data))
	}
	clear(data[k:])
	if err := os.WriteFile(seg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	w := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL})
	closeWriter(t, w)
	if n := w.Stats().RowsRejected; n != 0 {
		t.Errorf("RowsRejected = %d; want 0 (a torn tail, not damage)", n)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, rejectedDir, "*")); len(left) != 0 {
		t.Errorf("rejected/ holds %v; want nothing", left)
	}
	names := spoolNames(t, dir)
	if len(names) != 1 || parseMust(t, names[0]).rows != 2 {
		t.Fatalf("spool %v; want one file of the 2 whole rows", names)
	}
}

// TestWALAndSpoolBothFail: on a full disk a block's rows whose WAL write
// failed, and whose spool write then fails too, are kept nowhere: they are
// counted dropped, and only the rows the WAL did keep are recovered (needs
// root and mount, as TestWALDiskFull). Before, the log said every row
// stayed in the WAL and none was counted.
func TestWALAndSpoolBothFail(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	w := newWriter(t, Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
	for i := range 2 {
		if err := w.Write(sseRecord(i, 4)); err != nil {
			t.Fatal(err)
		}
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 256<<10), 0o644); err == nil {
		t.Fatal("the filler fit: the disk is not full")
	}
	failed := 0
	for i := 2; i < 5; i++ {
		if err := w.Write(sseRecord(i, 4)); err != nil {
			failed++
		}
	}
	if failed != 3 {
		t.Fatalf("%d of 3 rows failed on a full disk", failed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = w.Flush(ctx) // the spool write fails: the disk is full
	if got := w.Stats().RowsDropped; got != 3 {
		t.Errorf("RowsDropped = %d; want the 3 rows neither the WAL nor the spool kept", got)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	// w is abandoned without Close, like a crash.
	if got := walRecovered(t, dir); len(got) != 2 {
		t.Errorf("recovered %d rows; want the 2 the WAL kept", len(got))
	}
}

// TestWALRecoverOnFullDisk: a start whose WAL recovery finds no space for
// the spool file starts all the same, the segment left whole in wal/; the
// next start with space recovers every row (needs root and mount, as
// TestWALDiskFull). Before, the relay did not start until the disk was
// freed.
func TestWALRecoverOnFullDisk(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v: %s)", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	want, seg := crashedWAL(t, dir, 3, 4)
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 256<<10), 0o644); err == nil {
		t.Fatal("the filler fit: the disk is not full")
	}
	w, err := New(Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour})
	if err != nil {
		t.Fatalf("New on a full disk: %v; want a start with the segment left for later", err)
	}
	closeWriter(t, w)
	if _, err := os.Stat(seg); err != nil {
		t.Fatalf("the segment is gone: %v", err)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	got := walRecovered(t, dir)
	for id := range want {
		if !got[id] {
			t.Errorf("row %s not recovered once space was back", id)
		}
	}
}

// TestWALFailuresLoggedSpaced: a disk that fails every WAL sync round (full,
// failing) gets one log line per 10 s, saying how many it stands for, not a
// line per row; every failure is still counted.
func TestWALFailuresLoggedSpaced(t *testing.T) {
	failNext := failFsyncs(t)
	var logs servicetest.Buffer
	w := newWriter(t, Options{SpoolDir: t.TempDir(), Durability: DurabilityWAL, FlushInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	const n = 20
	for i := range n {
		failNext.Store(1)
		if err := w.Write(sseRecord(i, 2)); err == nil {
			t.Fatalf("row %d: Write succeeded with its fsync failing", i)
		}
		for _, f := range walFiles(t, w.o.SpoolDir) {
			if st, err := os.Stat(f); err == nil && st.Size() == 0 {
				t.Fatalf("row %d: empty WAL segment left behind by the failed round: %s", i, f)
			}
		}
		flush(t, w) // a new segment for the next row
	}
	if got := w.Stats().WALErrors; got < n {
		t.Errorf("WALErrors = %d; want at least %d", got, n)
	}
	if got := strings.Count(logs.String(), "wal write or fsync failed"); got != 1 {
		t.Errorf("%d log lines for %d failed sync rounds within 10 s, want 1:\n%s", got, n, logs.String())
	}
}

// TestSpoolDirRemoved: a spool_dir (with its wal/) removed under the
// running writer is made again at the next write: rows are spooled and
// logged durably again, none dropped. Before, every later block was
// dropped ("no such file or directory") until a restart.
func TestSpoolDirRemoved(t *testing.T) {
	for _, durability := range []string{DurabilityBatch, DurabilityWAL} {
		t.Run(durability, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			w := newWriter(t, Options{SpoolDir: dir, Durability: durability, FlushInterval: time.Hour})
			if err := w.Write(sseRecord(0, 2)); err != nil {
				t.Fatal(err)
			}
			flush(t, w)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			for i := 1; i < 4; i++ {
				if err := w.Write(sseRecord(i, 2)); err != nil {
					t.Fatalf("row %d after the directory was removed: %v", i, err)
				}
			}
			flush(t, w)
			// The first row's file went with the directory: counted
			// dropped (TestSpoolDirRemovedQueueForgets); none after it.
			if st := w.Stats(); st.RowsDropped != 1 || st.WALErrors != 0 {
				t.Errorf("after the directory was removed: %d rows dropped (want the removed file's 1), %d WAL errors", st.RowsDropped, st.WALErrors)
			}
			if got := len(spooledRowList(t, dir)); got != 3 {
				t.Errorf("%d rows in the spool made again, want 3", got)
			}
			// The directory made again is locked again: another process
			// (another open of the lock file) cannot take it.
			f, err := os.Open(filepath.Join(dir, spoolLockName))
			if err != nil {
				t.Fatalf("no lock file in the spool made again: %v", err)
			}
			defer f.Close()
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); !errors.Is(err, syscall.EWOULDBLOCK) {
				t.Errorf("the spool made again is not locked: flock = %v", err)
			}
			// Another of the writer's goroutines finding it gone at the
			// same time finds it made again by this process, not "in use".
			if err := remakeSpoolDir(dir); err != nil {
				t.Errorf("remaking a spool_dir this process made again: %v", err)
			}
		})
	}
}
