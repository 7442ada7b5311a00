package chlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

func find(t *testing.T, o FindOptions, id string) (*Found, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return Find(ctx, o, id)
}

// spoolRows writes recs through an embedded-mode writer (one spool file per
// record) and returns their ids.
func spoolRows(t *testing.T, dir string, recs ...*record.Record) []string {
	t.Helper()
	w, err := New(Options{SpoolDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.IDString())
		w.Write(r)
		flush(t, w)
	}
	closeWriter(t, w)
	return ids
}

func TestFindSpoolAndRejected(t *testing.T) {
	dir := t.TempDir()
	ids := spoolRows(t, dir, sseRecord(1, 3), sseRecord(2, 3))
	files, _ := filepath.Glob(filepath.Join(dir, "*"+spoolExt))
	if len(files) != 2 {
		t.Fatalf("spool files %v", files)
	}
	// A corrupt file, newest of all, that holds the id's bytes: reported,
	// and the search goes on to the good file.
	bad := filepath.Join(dir, "99999999999999999999-1-k-"+ids[0]+"-"+ids[0]+spoolExt)
	if err := os.WriteFile(bad, append([]byte{3, 1, 'x'}, ids[0]...), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := find(t, FindOptions{SpoolDir: dir}, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if f.Row.RequestID != ids[0] || len(f.Row.Chunks) != 3 || !strings.HasPrefix(f.Where, "spool file "+dir) || f.Rejected {
		t.Errorf("found %+v", f)
	}
	if len(f.Warnings) != 1 || !strings.Contains(f.Warnings[0], bad) {
		t.Errorf("warnings %q, want the corrupt file named", f.Warnings)
	}

	// The second row's file moved to rejected/.
	rej := filepath.Join(dir, "rejected")
	if err := os.MkdirAll(rej, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range files {
		if strings.Contains(filepath.Base(p), ids[1]) {
			if err := os.Rename(p, filepath.Join(rej, filepath.Base(p))); err != nil {
				t.Fatal(err)
			}
		}
	}
	f, err = find(t, FindOptions{SpoolDir: dir}, ids[1])
	if err != nil {
		t.Fatal(err)
	}
	if !f.Rejected || !strings.HasPrefix(f.Where, "rejected spool file "+rej) || f.Row.Status != 200 {
		t.Errorf("found %+v", f)
	}
}

func TestFindWALTornTail(t *testing.T) {
	dir := t.TempDir()
	w := walWriter(t, dir)
	defer closeWriter(t, w)
	r1, r2 := sseRecord(1, 2), sseRecord(2, 4)
	id2 := r2.IDString()
	w.Write(r1)
	w.Write(r2)
	// A copy of the segment with a torn record after it, as a crash leaves.
	_, data := onlySegment(t, dir)
	torn := filepath.Join(dir, "wal", "00000000000000000001"+walExt)
	if err := os.WriteFile(torn, append(data, 200, 0, 0, 0, 1, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := find(t, FindOptions{SpoolDir: dir}, id2)
	if err != nil {
		t.Fatal(err)
	}
	if f.Row.RequestID != id2 || len(f.Row.Chunks) != 4 || !strings.HasPrefix(f.Where, "wal segment ") {
		t.Errorf("found %+v", f)
	}
	_ = os.Remove(torn) // the writer's Close must not meet it
}

// TestFindWALCorruptFirstRecord: a segment whose first record's payload
// the disk damaged still yields the records after it; the damage is
// reported among the warnings.
func TestFindWALCorruptFirstRecord(t *testing.T) {
	dir := t.TempDir()
	w := walWriter(t, dir)
	defer closeWriter(t, w)
	var ids []string
	for i := range 6 {
		r := sseRecord(i, i+1)
		ids = append(ids, r.IDString())
		w.Write(r)
	}
	// A damaged copy that sorts first (newest), so that it is searched
	// before the writer's own segment.
	seg, data := onlySegment(t, dir)
	flipPayload(data, walOffsets(t, data), 0)
	bad := filepath.Join(dir, "wal", "99999999999999999999"+walExt)
	if err := os.WriteFile(bad, data, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(bad) // the writer's Close must not meet it

	damageReported := func(f *Found) bool {
		return len(f.Warnings) == 1 && strings.Contains(f.Warnings[0], bad) &&
			strings.Contains(f.Warnings[0], "1 corrupt record(s) skipped (payload fails its CRC; the first at offset 0)")
	}
	for i, id := range ids[1:] {
		f, err := find(t, FindOptions{SpoolDir: dir}, id)
		if err != nil {
			t.Fatal(err)
		}
		if f.Row.RequestID != id || len(f.Row.Chunks) != i+2 || f.Where != "wal segment "+bad || !damageReported(f) {
			t.Errorf("row %d: found %+v", i+2, f)
		}
	}
	// The damaged record's row is not taken from the damaged copy: it is
	// found whole in the writer's segment.
	f, err := find(t, FindOptions{SpoolDir: dir}, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if f.Row.RequestID != ids[0] || len(f.Row.Chunks) != 1 || f.Where != "wal segment "+seg || !damageReported(f) {
		t.Errorf("row 1: found %+v", f)
	}
}

func TestFindClickHouseExtraAndMissingColumns(t *testing.T) {
	chURL, db := testDB(t)
	w, err := New(Options{URL: chURL, Database: db, SpoolDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mustQuery(t, chURL, "", "ALTER TABLE "+db+".stream_logs ADD COLUMN extra_s String DEFAULT 'x', ADD COLUMN extra_a Array(Nullable(Int64)), ADD COLUMN extra_d Date DEFAULT today(), ADD COLUMN extra_dec Decimal(9, 2) DEFAULT 1.5")
	r := sseRecord(7, 5)
	id := r.IDString()
	w.Write(r)
	closeWriter(t, w)

	o := FindOptions{URL: chURL, Database: db, SpoolDir: t.TempDir()}
	f, err := find(t, o, id)
	if err != nil {
		t.Fatal(err)
	}
	if f.Row.RequestID != id || f.Row.Model != "gpt-4o" || len(f.Row.Chunks) != 5 || f.Row.Instance != "relay-1" ||
		!strings.HasPrefix(f.Where, "clickhouse "+db+".stream_logs at "+chURL) {
		t.Errorf("found %+v", f)
	}
	if _, err := find(t, o, strings.Repeat("0", 32)); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "clickhouse "+db) {
		t.Errorf("unknown id: %v", err)
	}
}

func TestFindClickHouseDown(t *testing.T) {
	dir := t.TempDir()
	ids := spoolRows(t, dir, sseRecord(1, 2))
	o := FindOptions{URL: "http://" + servicetest.FreeAddr(t), Password: "s3cret-pw", SpoolDir: dir, Timeout: 5 * time.Second}
	// The row is still in the spool: found without asking ClickHouse.
	if f, err := find(t, o, ids[0]); err != nil || f.Row.RequestID != ids[0] {
		t.Fatalf("found %+v, %v", f, err)
	}
	_, err := find(t, o, strings.Repeat("1", 32))
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "failed: clickhouse") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("ClickHouse down, unknown id: %v", err)
	}
}

func TestFindBadID(t *testing.T) {
	for _, id := range []string{"", "abc", strings.Repeat("A", 32), strings.Repeat("g", 32), strings.Repeat("a", 33), "' OR 1=1 --" + strings.Repeat("a", 21)} {
		if _, err := Find(context.Background(), FindOptions{SpoolDir: t.TempDir()}, id); !errors.Is(err, ErrBadRequestID) || !strings.Contains(err.Error(), "request_id") {
			t.Errorf("id %q: %v", id, err)
		}
	}
}

// onlySegment returns the path and bytes of the one WAL segment under dir.
func onlySegment(t *testing.T, dir string) (string, []byte) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "wal", "*"+walExt))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	return segs[0], data
}

// walWriter is a writer in WAL mode on dir that never sends (no ClickHouse)
// nor flushes on its own (a flush interval of an hour): every row stays in
// the WAL until the test closes it.
func walWriter(t *testing.T, dir string) *Writer {
	t.Helper()
	w, err := New(Options{SpoolDir: dir, Durability: DurabilityWAL, FlushInterval: time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return w
}
