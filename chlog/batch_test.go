package chlog

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

func count(t testing.TB, chURL, db string) int {
	t.Helper()
	n, err := strconv.Atoi(mustQuery(t, chURL, db, "SELECT count() FROM stream_logs"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBatching(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		rows int
	}{
		{"rows", Options{BatchRows: 5, FlushInterval: time.Hour}, 5},
		{"bytes", Options{BatchBytes: 4 << 10, FlushInterval: time.Hour}, 3}, // ~1.5 KiB a row
		{"interval", Options{FlushInterval: 100 * time.Millisecond}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chURL, db := testDB(t)
			tt.o.URL, tt.o.Database = chURL, db
			var inserts []int
			tt.o.OnInsert = func(_ time.Duration, rows int, err error) {
				if err == nil {
					inserts = append(inserts, rows)
				}
			}
			w := newWriter(t, tt.o)
			for i := range tt.rows {
				w.Write(sseRecord(i, 10))
			}
			waitFor(t, "rows in ClickHouse", 10*time.Second, func() bool { return count(t, chURL, db) == tt.rows })
			closeWriter(t, w)
			if len(inserts) != 1 || inserts[0] != tt.rows {
				t.Fatalf("inserts %v; want one of %d rows", inserts, tt.rows)
			}
		})
	}
}

// closedPortURL returns an http URL nobody listens on.
func closedPortURL(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr
}

func spoolNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), spoolExt) {
			names = append(names, e.Name())
		}
	}
	return names
}

func TestUnreachableThenReplay(t *testing.T) {
	chURL, db := testDB(t)
	dir := t.TempDir()
	w := newWriter(t, Options{URL: closedPortURL(t), Database: db, SpoolDir: dir, BatchRows: 10, FlushInterval: time.Hour, Retries: 1})
	want := map[string]bool{}
	for i := range 35 {
		r := sseRecord(i, 3)
		want[string(r.ID[:])] = true
		w.Write(r)
	}
	closeWriter(t, w)
	st := w.Stats()
	if st.RowsSpooled != 35 || st.RowsWritten != 0 || st.RowsDropped != 0 {
		t.Fatalf("stats %+v", st)
	}
	// Four blocks of at most 10 rows; group commit may join waiting blocks
	// into one file, so 1 to 4 files holding 35 rows in all.
	names, rows := spoolNames(t, dir), 0
	for _, n := range names {
		rows += parseMust(t, n).rows
	}
	if len(names) < 1 || len(names) > 4 || rows != 35 {
		t.Fatalf("%d spool files with %d rows; want 1 to 4 files with 35 rows", len(names), rows)
	}

	w = newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 50 * time.Millisecond})
	waitFor(t, "replay", 20*time.Second, func() bool { return w.Stats().RowsReplayed == 35 })
	// Live rows still go straight in next to the replay.
	r := sseRecord(99, 3)
	want[string(r.ID[:])] = true
	w.Write(r)
	closeWriter(t, w)
	assertExactlyOnce(t, chURL, db, want)
	if n := len(spoolNames(t, dir)); n != 0 {
		t.Fatalf("%d spool files left", n)
	}
}

func assertExactlyOnce(t testing.TB, chURL, db string, want map[string]bool) {
	t.Helper()
	out := mustQuery(t, chURL, db, "SELECT request_id, count() FROM stream_logs GROUP BY request_id FORMAT TSV")
	got := 0
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		id, n, _ := strings.Cut(line, "\t")
		if !want[id] || n != "1" {
			t.Errorf("request_id %s appears %s times (wanted: %v)", id, n, want[id])
		}
		got++
	}
	if got != len(want) {
		t.Fatalf("%d distinct request_ids; want %d", got, len(want))
	}
}

func TestSpoolCap(t *testing.T) {
	dir := t.TempDir()
	// Embedded mode: every block of 4 rows becomes a file of about 6 KiB.
	w := newWriter(t, Options{SpoolDir: dir, BatchRows: 4, FlushInterval: time.Hour, SpoolMaxBytes: 15 << 10})
	for i := range 4 * 5 {
		w.Write(sseRecord(i, 10))
		flushIfFull(t, w, i)
	}
	// Close spools what is left, which may drop the oldest file: rows
	// lost at close, which it reports.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil && !strings.Contains(err.Error(), "rows dropped: spool over spool_max_bytes") {
		t.Fatalf("Close: %v", err)
	}
	names := spoolNames(t, dir)
	st := w.Stats()
	kept := 0 // group commit may put two waiting blocks in one file
	for _, n := range names {
		kept += parseMust(t, n).rows
	}
	if len(names) >= 5 || kept >= 20 || st.RowsDropped != int64(20-kept) || st.RowsSpooled != 20 {
		t.Fatalf("files %v (%d rows), stats %+v", names, kept, st)
	}
	if st.SpoolBytes > 15<<10 || st.SpoolFiles != int64(len(names)) {
		t.Fatalf("spool gauges %+v", st)
	}
	// The newest rows survive: the kept files hold the last rows written
	// (ids begin with the record's index in hex), the oldest went.
	first, last := parseMust(t, names[0]).first, parseMust(t, names[len(names)-1]).last
	if want := fmt.Sprintf("%08x", 20-kept); first[:8] != want || last[:8] != fmt.Sprintf("%08x", 19) {
		t.Fatalf("kept files %v hold rows %s..%s; want the newest %d rows (from %s)", names, first[:8], last[:8], kept, want)
	}
}

// flushIfFull keeps the spooler from racing the test's expectations: each
// full block is on disk before the next row arrives.
func flushIfFull(t testing.TB, w *Writer, i int) {
	if (i+1)%w.o.BatchRows == 0 {
		flush(t, w)
	}
}

func parseMust(t testing.TB, name string) spoolFile {
	f, ok := parseSpoolName(name)
	if !ok {
		t.Fatalf("bad spool name %s", name)
	}
	return f
}

func TestEmbeddedSpoolLoads(t *testing.T) {
	chURL, db := testDB(t)
	// Create the table the way the relay does.
	w := newWriter(t, Options{URL: chURL, Database: db})
	closeWriter(t, w)

	dir := t.TempDir()
	w = newWriter(t, Options{SpoolDir: dir, BatchRows: 3, FlushInterval: time.Hour})
	want := map[string]bool{}
	for _, r := range roundTripRecords() {
		want[string(r.ID[:])] = true
		w.Write(r)
	}
	closeWriter(t, w)
	names := spoolNames(t, dir)
	if len(names) != 2 {
		t.Fatalf("spool files %v; want 2", names)
	}
	// One file with clickhouse-client when it is installed, the rest over HTTP.
	for i, name := range names {
		path := filepath.Join(dir, name)
		if i == 0 {
			if loadWithClient(t, db, path) {
				continue
			}
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := chQuery(chURL, "", "INSERT INTO "+db+".stream_logs FORMAT Native\n"+string(data)); err != nil {
			t.Fatalf("load %s: %v", name, err)
		}
	}
	assertExactlyOnce(t, chURL, db, want)
}

// loadWithClient runs the README's command; false when the client or the
// server's native port (19000, deployments/local/services.sh) is missing.
func loadWithClient(t testing.TB, db, path string) bool {
	bin, err := exec.LookPath("clickhouse-client")
	if err != nil {
		return false
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, "--port", "19000", "--query", "INSERT INTO "+db+".stream_logs FORMAT Native")
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Logf("clickhouse-client: %v: %s (falling back to HTTP)", err, out)
		return false
	}
	t.Logf("loaded %s with clickhouse-client", filepath.Base(path))
	return true
}

// TestReplayLogCountsAttempts: while the server refuses inserts for the
// moment (too many parts, a transient failure), the spooled block's replay
// fails pass after pass; each failure's log line says which attempt it
// was.
func TestReplayLogCountsAttempts(t *testing.T) {
	chURL, db := testDB(t)
	_, proxyURL := newRefusingProxy(t, chURL, map[string]string{
		"INSERT": "Code: 252, e.displayText() = DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts., e.what() = DB::Exception",
	})
	var logs servicetest.Buffer
	w := newWriter(t, Options{URL: proxyURL, Database: db, FlushInterval: 50 * time.Millisecond, Retries: -1,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer closeWriter(t, w)
	w.Write(sseRecord(1, 3))
	// The live insert (attempt 1, no retries), then the replay's passes
	// (attempts 1, 2, 3: 800 ms, then 1.6 s apart).
	waitFor(t, "four failed inserts", 30*time.Second, func() bool { return w.Stats().InsertErrors >= 4 })
	out := logs.String()
	for _, want := range []string{"attempt=1 ", "attempt=2 ", "attempt=3 "} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q among the failed inserts' lines:\n%s", want, out)
		}
	}
}
