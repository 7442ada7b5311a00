package chlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// damagedSpool is a spool file's bytes whose first block holds one row of
// ids (its own spool file) and whose second block, another row, is cut in
// half; it returns the two ids too.
func damagedSpool(t *testing.T) (data []byte, good, cut string) {
	t.Helper()
	dir := t.TempDir()
	ids := spoolRows(t, dir, sseRecord(1, 3), sseRecord(2, 3))
	files, _ := filepath.Glob(filepath.Join(dir, "*"+spoolExt))
	if len(files) != 2 {
		t.Fatalf("spool files %v", files)
	}
	var blocks [2][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(filepath.Base(p), ids[0]) {
			blocks[0] = b
		} else {
			blocks[1] = b
		}
	}
	data = append(append([]byte(nil), blocks[0]...), blocks[1][:len(blocks[1])/2]...)
	return data, ids[0], ids[1]
}

// TestDecodeRowsKeepsGoodBlocks: the blocks before a damaged one decode;
// the error names the damaged block.
func TestDecodeRowsKeepsGoodBlocks(t *testing.T) {
	data, good, _ := damagedSpool(t)
	rows, err := DecodeRows(data)
	if err == nil || !strings.Contains(err.Error(), "native block 1") {
		t.Errorf("error %v, want native block 1 named", err)
	}
	if len(rows) != 1 || rows[0].RequestID != good || len(rows[0].Chunks) != 3 {
		t.Errorf("rows %+v, want the first block's row", rows)
	}
}

// TestFindDamagedSpoolGoodBlock: a row in a good block of a spool file
// whose next block is cut is found, in the spool and in rejected/.
func TestFindDamagedSpoolGoodBlock(t *testing.T) {
	data, good, cut := damagedSpool(t)
	for _, sub := range []string{"", "rejected"} {
		t.Run("dir="+sub, func(t *testing.T) {
			spool := t.TempDir()
			dir := filepath.Join(spool, sub)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "00000000000000000001-2-k-"+good+"-"+cut+spoolExt)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := find(t, FindOptions{SpoolDir: spool}, good)
			if err != nil {
				t.Fatal(err)
			}
			if f.Row.RequestID != good || len(f.Row.Chunks) != 3 || !strings.HasSuffix(f.Where, "spool file "+p) || f.Rejected != (sub != "") {
				t.Errorf("found %+v", f)
			}
			// The cut block's row is lost; the miss names the damage when
			// the file holds the id's bytes.
			_, err = find(t, FindOptions{SpoolDir: spool}, cut)
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("cut row: %v", err)
			}
		})
	}
}

// TestFindWALDamagedHeaderID: a record whose header request id was
// damaged (the CRC covers only the payload) into another request's id is
// not taken for that request: it is reported and the search goes on.
func TestFindWALDamagedHeaderID(t *testing.T) {
	dir := t.TempDir()
	w := walWriter(t, dir)
	defer closeWriter(t, w)
	r1, r2 := sseRecord(1, 1), sseRecord(2, 2)
	id1, id2 := r1.IDString(), r2.IDString()
	w.Write(r1)
	w.Write(r2)
	_, data := onlySegment(t, dir)
	offs := walOffsets(t, data)
	if len(offs) != 2 {
		t.Fatalf("records at %v, want 2", offs)
	}

	// Record 0 (r1's row) headed with r2's id, in a segment of its own dir
	// so that the writer's segment is not searched.
	spool := t.TempDir()
	if err := os.MkdirAll(filepath.Join(spool, "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(spool, "wal", "00000000000000000001"+walExt)
	bad := append([]byte(nil), data...)
	copy(bad[offs[0]+8:offs[0]+walHeader], id2)
	if err := os.WriteFile(seg, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := find(t, FindOptions{SpoolDir: spool}, id2)
	if err != nil {
		t.Fatal(err)
	}
	if f.Row.RequestID != id2 || len(f.Row.Chunks) != 2 || f.Where != "wal segment "+seg {
		t.Errorf("found request_id %s with %d chunks in %q, want r2's row", f.Row.RequestID, len(f.Row.Chunks), f.Where)
	}
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], seg) || !strings.Contains(f.Warnings[0], id1) || !strings.Contains(f.Warnings[0], "damaged header") {
		t.Errorf("warnings %q, want the damaged record named", f.Warnings)
	}

	// Only the damaged record bears the id: a miss naming the damage.
	copy(bad[offs[1]+8:offs[1]+walHeader], id1)
	if err := os.WriteFile(seg, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = find(t, FindOptions{SpoolDir: spool}, id2)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "damaged header") {
		t.Errorf("want a miss naming the damaged record: %v", err)
	}
}

// TestFindSpoolDirUnreadable: a spool_dir that is a regular file makes the
// miss no answer (Unreadable names spool_dir); a missing one is a clean
// miss.
func TestFindSpoolDirUnreadable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "spool")
	if err := os.WriteFile(file, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := strings.Repeat("e", 32)
	_, err := find(t, FindOptions{SpoolDir: file}, id)
	nf, ok := errors.AsType[*NotFoundError](err)
	if !ok || len(nf.Unreadable) != 3 || !strings.Contains(nf.Unreadable[0], "spool_dir "+file+" cannot be read") {
		t.Errorf("spool_dir a file: %#v", err)
	}
	_, err = find(t, FindOptions{SpoolDir: filepath.Join(t.TempDir(), "missing")}, id)
	if nf, ok := errors.AsType[*NotFoundError](err); !ok || len(nf.Unreadable) != 0 || len(nf.Failed) != 0 {
		t.Errorf("spool_dir missing: %v", err)
	}
}

// TestFindInRejectedWAL: a row whose only copy is in a damaged WAL
// segment set aside in rejected/ is found there, said to be rejected (it
// was reported not found, "try again in a moment").
func TestFindInRejectedWAL(t *testing.T) {
	dir := t.TempDir()
	want, seg := crashedWAL(t, dir, 3, 2)
	if err := os.MkdirAll(filepath.Join(dir, rejectedDir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(seg, filepath.Join(dir, rejectedDir, filepath.Base(seg))); err != nil {
		t.Fatal(err)
	}
	for id := range want {
		f, err := Find(context.Background(), FindOptions{SpoolDir: dir}, id)
		if err != nil {
			t.Fatalf("Find %s: %v", id, err)
		}
		if !f.Rejected || !strings.Contains(f.Where, "rejected wal segment") {
			t.Errorf("found %s at %q (rejected %v), want the rejected wal copy", id, f.Where, f.Rejected)
		}
	}
}

// TestFindSkipsFIFO: a named pipe with a spool file's name in spool_dir
// is passed over, by relay show and relay spool ls: reading it blocked
// them for good.
func TestFindSkipsFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("mkfifo:", err)
	}
	// The pipe itself, and a link to one, under spool names.
	if err := syscall.Mkfifo(filepath.Join(dir, "00000000000000000001-1-k-a-b.native"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fifo, filepath.Join(dir, "00000000000000000002-1-k-a-b.native")); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() {
		_, err := Find(context.Background(), FindOptions{SpoolDir: dir}, strings.Repeat("a", 32))
		done <- err
	}()
	go func() {
		_, err := ListSpool(dir, true)
		if err == nil {
			_, err = listDir(dir, false, true) // relay spool ls -verify
		}
		done <- err
	}()
	for range 2 {
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, ErrNotFound) {
				t.Errorf("with a FIFO in spool_dir: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Find or ListSpool blocked on a FIFO in spool_dir")
		}
	}
}
