package chlog

import (
	"strings"
	"testing"
	"time"
)

// TestExceptionAfterWriteNotResent: ClickHouse can answer an insert with an
// exception after it stored the rows (here a materialized view on the table
// throws while the block is pushed to it, code 395 on 18.16: the table's
// part is committed already). The relay must check before it sends such a
// block again. Before the fix every retry, and then every replay pass of
// the spooled block (an unknown code: "schema", kept at the head), stored
// the rows once more.
func TestExceptionAfterWriteNotResent(t *testing.T) {
	chURL, db := testDB(t)
	w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: 100 * time.Millisecond, Retries: 1})
	defer closeWriter(t, w)
	mustQuery(t, chURL, db, "CREATE MATERIALIZED VIEW "+db+".failing_view ENGINE = MergeTree ORDER BY x AS SELECT throwIf(request_id != '') AS x FROM "+db+".stream_logs")

	ids := writeSSE(w, 5)
	waitFor(t, "the rows in ClickHouse", 60*time.Second, func() bool { return count(t, chURL, db) >= len(ids) })
	// Let the retries and several replay passes go by: each would store
	// the rows again.
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if n := count(t, chURL, db); n != len(ids) {
			out := mustQuery(t, chURL, db, "SELECT request_id, count() FROM stream_logs GROUP BY request_id FORMAT TSV")
			t.Fatalf("rows in ClickHouse = %d, want %d (each once):\n%s", n, len(ids), strings.TrimSpace(out))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if s := w.Stats(); s.SpoolFiles != 0 || s.RowsDropped != 0 {
		t.Errorf("SpoolFiles = %d, RowsDropped = %d; want 0, 0 (the rows are stored)", s.SpoolFiles, s.RowsDropped)
	}
}

// TestReplayExceptionAfterWriteNotResent: the same for a spooled block: a
// replayed insert that the server answered with such an exception flags
// its file "u", so that the next pass checks before it sends it again.
// Before the fix the file stayed "k" at the head of the queue and every
// pass stored its rows once more.
func TestReplayExceptionAfterWriteNotResent(t *testing.T) {
	chURL, db := testDB(t)
	closeWriter(t, newWriter(t, Options{URL: chURL, Database: db})) // the table
	mustQuery(t, chURL, db, "CREATE MATERIALIZED VIEW "+db+".failing_view ENGINE = MergeTree ORDER BY x AS SELECT throwIf(request_id != '') AS x FROM "+db+".stream_logs")
	dir := t.TempDir()
	ew := newWriter(t, Options{SpoolDir: dir, FlushInterval: time.Hour}) // spooled, flagged "k"
	ids := writeSSE(ew, 5)
	closeWriter(t, ew)

	w := newWriter(t, Options{URL: chURL, Database: db, SpoolDir: dir, FlushInterval: 100 * time.Millisecond})
	defer closeWriter(t, w)
	waitFor(t, "the spool to empty", 60*time.Second, func() bool {
		if n := count(t, chURL, db); n > len(ids) {
			t.Fatalf("rows in ClickHouse = %d, want %d: the spooled block was stored again", n, len(ids))
		}
		return w.Stats().SpoolFiles == 0
	})
	if n := count(t, chURL, db); n != len(ids) {
		out := mustQuery(t, chURL, db, "SELECT request_id, count() FROM stream_logs GROUP BY request_id FORMAT TSV")
		t.Fatalf("rows in ClickHouse = %d, want %d (each once):\n%s", n, len(ids), strings.TrimSpace(out))
	}
}
