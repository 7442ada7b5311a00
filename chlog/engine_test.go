package chlog

import (
	"errors"
	"strings"
	"testing"
)

// TestEngineChecked: an existing table whose engine does not keep each row
// as sent is refused at start, naming the engine: a SummingMergeTree folded
// rows of one route and second into one, Null dropped every row, a view
// failed every insert, and each was logged as fitting the schema. A Buffer
// in front of a table is taken.
func TestEngineChecked(t *testing.T) {
	chURL, db := testDB(t)
	closeWriter(t, newWriter(t, Options{URL: chURL, Database: db, Table: "src"}))
	if _, err := chQuery(chURL, db, "CREATE TABLE sink AS src ENGINE = Null"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ddl    string
		refuse string
	}{
		{"CREATE TABLE stream_logs AS src ENGINE = Null", "engine Null"},
		{"CREATE TABLE stream_logs AS src ENGINE = SummingMergeTree PARTITION BY toYYYYMMDD(created_at) ORDER BY (route, created_at)", "engine SummingMergeTree"},
		{"CREATE TABLE stream_logs AS src ENGINE = Memory", "engine Memory"},
		{"CREATE VIEW stream_logs AS SELECT * FROM src", "engine View"},
		{"CREATE TABLE stream_logs AS src ENGINE = Buffer(" + db + ", src, 1, 1, 1, 1, 1000000, 1, 100000000)", ""},
		// A Buffer over Null lost every row.
		{"CREATE TABLE stream_logs AS src ENGINE = Buffer(" + db + ", sink, 1, 1, 1, 1, 1000000, 1, 100000000)", "a Buffer over " + db + ".sink of engine Null"},
	} {
		if _, err := chQuery(chURL, db, tt.ddl); err != nil {
			t.Fatal(err)
		}
		w, err := New(Options{URL: chURL, Database: db, SpoolDir: t.TempDir(), Logger: testLogger(t)})
		switch {
		case tt.refuse == "" && err != nil:
			t.Errorf("%s: %v", tt.ddl, err)
		case tt.refuse != "" && (!errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), tt.refuse)):
			t.Errorf("%s: %v, want a schema error naming %q", tt.ddl, err, tt.refuse)
		}
		if w != nil {
			closeWriter(t, w)
		}
		if _, err := chQuery(chURL, db, "DROP TABLE stream_logs"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBufferDestination: a Buffer's destination as ClickHouse writes it in
// engine_full: currentDatabase() and an empty name are the Buffer's own
// database, a quoted name may hold a comma.
func TestBufferDestination(t *testing.T) {
	for _, tt := range []struct{ full, db, table string }{
		{"Buffer(relay, stream_logs_dst, 16, 10, 100, 10000, 1000000, 10000000, 100000000)", "relay", "stream_logs_dst"},
		{"Buffer(currentDatabase(), src, 1, 1, 1, 1, 1000000, 1, 100000000)", "own", "src"},
		{"Buffer('', src, 1, 1, 1, 1, 1, 1, 1)", "own", "src"},
		{"Buffer(db, `we,ird`, 1, 1, 1, 1, 1, 1, 1)", "db", "we,ird"},
		{"Buffer('d\\'b', 't', 1)", "d'b", "t"},
	} {
		db, table, ok := bufferDestination(tt.full, "own")
		if !ok || db != tt.db || table != tt.table {
			t.Errorf("bufferDestination(%q) = %q, %q, %v; want %q, %q", tt.full, db, table, ok, tt.db, tt.table)
		}
	}
	for _, full := range []string{"MergeTree", "Buffer(db)", "Buffer(db, 'unclosed"} {
		if _, _, ok := bufferDestination(full, "own"); ok {
			t.Errorf("bufferDestination(%q) read a destination", full)
		}
	}
}
