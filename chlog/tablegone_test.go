package chlog

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// tableRows is the table's row count, -1 while it cannot be read (the
// table or database missing).
func tableRows(chURL, db string) int {
	s, err := chQuery(chURL, db, "SELECT count() FROM stream_logs")
	if err != nil {
		return -1
	}
	var n int
	if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil {
		return -1
	}
	return n
}

// writeFrom writes n records with ids from first on and flushes, the
// flush's error (an insert that failed: its rows spooled) ignored.
func writeFrom(t *testing.T, w *Writer, first, n int) {
	t.Helper()
	for i := range n {
		_ = w.Write(sseRecord(first+i, 2))
	}
	_ = w.Flush(t.Context())
}

// TestDroppedTableMadeAgain: a table (or its database) dropped while the
// relay runs is made again by the replayer, and the rows that found it
// gone go in once; the writer retried them for good, the table never
// made again before a restart.
func TestDroppedTableMadeAgain(t *testing.T) {
	for _, drop := range []string{"DROP TABLE %s.stream_logs", "DROP DATABASE %s"} {
		t.Run(strings.Fields(drop)[1], func(t *testing.T) {
			chURL, db := testDB(t)
			w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: time.Hour, Retries: -1})
			defer closeWriter(t, w)
			writeFrom(t, w, 0, 2)
			if n := tableRows(chURL, db); n != 2 {
				t.Fatalf("%d rows before the drop, want 2", n)
			}
			mustQuery(t, chURL, "", fmt.Sprintf(drop, db))
			writeFrom(t, w, 10, 3)
			waitFor(t, "the table made again with the 3 rows", 60*time.Second, func() bool { return tableRows(chURL, db) == 3 })
			if s := w.Stats(); s.RowsDropped != 0 || s.RowsRejected != 0 {
				t.Errorf("stats %+v: want none dropped or rejected", s)
			}
		})
	}
}

// refusingProxy stands between the writer and the real server: a query
// that begins with one of refuse's prefixes is answered as ClickHouse
// answers an error (HTTP 500, "Code: N, e.displayText() = ..."), the rest
// go to the server.
type refusingProxy struct {
	target string
	refuse atomic.Pointer[map[string]string] // query prefix -> error text
}

func newRefusingProxy(t *testing.T, target string, refuse map[string]string) (*refusingProxy, string) {
	p := &refusingProxy{target: target}
	p.refuse.Store(&refuse)
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv.URL
}

func (p *refusingProxy) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	query := req.URL.Query().Get("query")
	if query == "" {
		query = string(body)
	}
	for prefix, answer := range *p.refuse.Load() {
		if strings.HasPrefix(query, prefix) {
			rw.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(rw, answer+"\n")
			return
		}
	}
	out, err := http.NewRequest(req.Method, p.target+req.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = req.Header.Clone()
	resp, err := http.DefaultClient.Do(out)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		rw.Header()[k] = v
	}
	rw.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(rw, resp.Body)
}

// TestStartWithoutDDLRights: a user allowed to insert but not to run DDL
// (code 392 to any CREATE) starts the relay on a table the operator made;
// the relay exited, refused a CREATE DATABASE IF NOT EXISTS of a database
// that existed.
func TestStartWithoutDDLRights(t *testing.T) {
	chURL, db := testDB(t)
	closeWriter(t, newWriter(t, Options{URL: chURL, Database: db})) // the operator's table
	_, proxyURL := newRefusingProxy(t, chURL, map[string]string{
		"CREATE": "Code: 392, e.displayText() = DB::Exception: Cannot create database. DDL queries are prohibited for the user, e.what() = DB::Exception",
		"ALTER":  "Code: 392, e.displayText() = DB::Exception: Cannot execute query. DDL queries are prohibited for the user, e.what() = DB::Exception",
	})
	w := newWriter(t, Options{URL: proxyURL, Database: db, FlushInterval: time.Hour})
	writeFrom(t, w, 0, 2)
	closeWriter(t, w)
	if n := tableRows(chURL, db); n != 2 {
		t.Errorf("%d rows, want 2", n)
	}
}

// TestStartWhileServerBusy: a server that refuses the schema check at
// start for the moment (too many simultaneous queries, a memory limit)
// is unwell, not misconfigured: the writer starts spooling and the
// replayer makes the schema and inserts once it answers. New failed, and
// the relay exited.
func TestStartWhileServerBusy(t *testing.T) {
	for _, answer := range []string{
		"Code: 202, e.displayText() = DB::Exception: Too many simultaneous queries. Maximum: 1, e.what() = DB::Exception",
		"Code: 241, e.displayText() = DB::Exception: Memory limit (for user) exceeded: would use 4.00 MiB (attempt to allocate chunk of 1048576 bytes), maximum: 3.81 MiB, e.what() = DB::Exception",
	} {
		t.Run(answer[:9], func(t *testing.T) {
			chURL, db := testDB(t)
			p, proxyURL := newRefusingProxy(t, chURL, map[string]string{"SELECT version()": answer})
			w := newWriter(t, Options{URL: proxyURL, Database: db, FlushInterval: time.Hour})
			defer closeWriter(t, w)
			writeFrom(t, w, 0, 2)
			p.refuse.Store(&map[string]string{})
			waitFor(t, "the schema made and the rows in", 60*time.Second, func() bool { return tableRows(chURL, db) == 2 })
		})
	}
}

// TestLateMigrationRefusedBlocks: a server that comes up after the start
// and refuses the migration (a user without DDL rights, a table missing a
// column) blocks the queue loudly (relay_storage_blocked), as such a
// table makes the start fail; it was logged as "still unreachable",
// retried for good with the blocked gauge at 0.
func TestLateMigrationRefusedBlocks(t *testing.T) {
	chURL, db := testDB(t)
	closeWriter(t, newWriter(t, Options{URL: chURL, Database: db}))
	if _, err := chQuery(chURL, db, "ALTER TABLE stream_logs DROP COLUMN truncated_reason"); err != nil {
		t.Fatal(err)
	}
	p, proxyURL := newRefusingProxy(t, chURL, map[string]string{
		// Unwell at start (a network error between replicas): spooling.
		"SELECT version()": "Code: 210, e.displayText() = DB::NetException: Connection refused, e.what() = DB::NetException",
	})
	w := newWriter(t, Options{URL: proxyURL, Database: db, FlushInterval: time.Hour})
	defer closeWriter(t, w)
	writeFrom(t, w, 0, 2)
	p.refuse.Store(&map[string]string{
		"ALTER": "Code: 392, e.displayText() = DB::Exception: Cannot execute query. DDL queries are prohibited for the user, e.what() = DB::Exception",
	})
	waitFor(t, "the queue blocked", 60*time.Second, func() bool { return w.Stats().Blocked == 1 })
	p.refuse.Store(&map[string]string{})
	waitFor(t, "the column added and the rows in", 60*time.Second, func() bool { return tableRows(chURL, db) == 2 })
	// The replayer clears the gauge once its insert returned, a moment
	// after the rows are visible.
	waitFor(t, "the queue unblocked", 30*time.Second, func() bool { return w.Stats().Blocked == 0 })
}
