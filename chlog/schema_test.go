package chlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// TestSchemaMatchesBlock: the declarative schema and the Native block agree
// on names, types and order, and the version numbers are consistent.
func TestSchemaMatchesBlock(t *testing.T) {
	in := newBlock().input
	if len(in) != len(columns) {
		t.Fatalf("block has %d columns, schema %d", len(in), len(columns))
	}
	maxSince := 0
	seen := map[string]bool{}
	for i, c := range columns {
		if in[i].Name != c.name || string(in[i].Data.Type()) != c.typ {
			t.Errorf("column %d: block %s %s, schema %s %s", i, in[i].Name, in[i].Data.Type(), c.name, c.typ)
		}
		if c.since < 1 || c.since > schemaVersion {
			t.Errorf("column %s: since %d outside 1..%d", c.name, c.since, schemaVersion)
		}
		if seen[c.name] {
			t.Errorf("column %s declared twice", c.name)
		}
		seen[c.name] = true
		maxSince = max(maxSince, c.since)
	}
	if maxSince != schemaVersion {
		t.Errorf("schemaVersion %d, newest column since %d", schemaVersion, maxSince)
	}
}

// TestIncompatible: the compatibility rule, case by case as verified on
// ClickHouse 18.16 (see incompatible).
func TestIncompatible(t *testing.T) {
	tests := []struct {
		want string
		have tableColumn
		ok   bool
	}{
		{"String", tableColumn{Type: "String"}, true},
		{"String", tableColumn{Type: "String", DefaultKind: "DEFAULT"}, true},
		{"DateTime", tableColumn{Type: "DateTime('UTC')"}, true},
		{"Nullable(UInt32)", tableColumn{Type: "Nullable(UInt32)"}, true},
		{"String", tableColumn{Type: "Nullable(String)"}, false}, // accepted by 18.16, then SELECT crashes it
		{"Nullable(UInt32)", tableColumn{Type: "UInt32"}, false},
		{"UInt16", tableColumn{Type: "UInt32"}, false},
		{"UInt16", tableColumn{Type: "String"}, false},
		{"String", tableColumn{Type: "LowCardinality(String)"}, false},
		{"String", tableColumn{Type: "FixedString(16)"}, false},
		{"String", tableColumn{Type: "String", DefaultKind: "ALIAS"}, false},
		{"String", tableColumn{Type: "String", DefaultKind: "MATERIALIZED"}, false},
		{"DateTime", tableColumn{Type: "UInt32"}, false},
	}
	for _, tt := range tests {
		why := incompatible(tt.want, tt.have)
		if (why == "") != tt.ok {
			t.Errorf("want %s, have %+v: %q", tt.want, tt.have, why)
		}
	}
}

// schemaLog collects a writer's log lines.
type schemaLog struct{ servicetest.Buffer }

func (l *schemaLog) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// oldTableSQL is today's DDL without the columns in drop, the column list
// reversed when reorder is set, and extra (a column definition) in the
// middle when not empty.
func oldTableSQL(db string, drop []string, reorder bool, extra string, retype map[string]string) string {
	var defs []string
	for _, c := range columns {
		if slices.Contains(drop, c.name) {
			continue
		}
		typ := c.typ
		if r, ok := retype[c.name]; ok {
			typ = r
		}
		defs = append(defs, c.name+" "+typ)
	}
	if reorder {
		slices.Reverse(defs)
	}
	if extra != "" {
		defs = slices.Insert(defs, len(defs)/2, extra)
	}
	return "CREATE TABLE " + db + ".stream_logs (" + strings.Join(defs, ", ") +
		") ENGINE = MergeTree PARTITION BY toYYYYMMDD(created_at) ORDER BY (route, created_at)"
}

// tableLayout is "name type, ..." of the table in system.columns order.
func tableLayout(t *testing.T, chURL, db string) string {
	t.Helper()
	return mustQuery(t, chURL, "", "SELECT arrayStringConcat(groupArray(concat(name, ' ', type)), ', ') FROM (SELECT name, type FROM system.columns WHERE database = '"+db+"' AND table = 'stream_logs')")
}

// TestSchemaUpgradeOldTable: a table of an older release (today's columns
// minus instance, user_agent and truncated_reason, in another order, with
// a column of the operator's own) is upgraded by New: the missing columns
// are added after their schema neighbours and logged, rows written
// afterwards carry those fields, the extra column and old rows are
// untouched, and a second start changes nothing.
func TestSchemaUpgradeOldTable(t *testing.T) {
	chURL, db := testDB(t)
	mustQuery(t, chURL, "", "CREATE DATABASE "+db)
	mustQuery(t, chURL, "", oldTableSQL(db, []string{"instance", "user_agent", "truncated_reason"}, true, "note String DEFAULT 'from-default'", nil))
	mustQuery(t, chURL, "", "INSERT INTO "+db+".stream_logs (request_id, created_at, route, note) VALUES ('old-row', now(), 'openai', 'kept')")

	var logs schemaLog
	w := newWriter(t, Options{URL: chURL, Database: db, Logger: logs.logger()})
	for _, c := range []string{"user_agent", "instance", "truncated_reason"} {
		if !strings.Contains(logs.String(), "msg=\"chlog: added missing column\" table="+db+".stream_logs column="+c+" type=String") {
			t.Errorf("no log line for the added column %s:\n%s", c, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "columns=note") {
		t.Errorf("the extra column is not logged:\n%s", logs.String())
	}
	layout := tableLayout(t, chURL, db)
	for _, want := range []string{"client_ip String, user_agent String, instance String, truncated_reason String", "note String"} {
		if !strings.Contains(layout, want) {
			t.Errorf("table layout lacks %q: %s", want, layout)
		}
	}

	recs := []*record.Record{sseRecord(1, 3), sseRecord(2, 2)}
	recs[1].Truncated, recs[1].TruncatedReason = true, record.TruncStorageBudget
	for _, r := range recs {
		w.Write(r)
	}
	closeWriter(t, w)
	rows := rowsOf(t, mustQuery(t, chURL, db, "SELECT request_id, user_agent, instance, truncated_reason, note FROM stream_logs ORDER BY request_id FORMAT JSONEachRow"))
	got := map[string]string{}
	for _, r := range rows {
		got[r["request_id"].(string)] = fmt.Sprintf("%v|%v|%v|%v", r["user_agent"], r["instance"], r["truncated_reason"], r["note"])
	}
	want := map[string]string{
		"old-row":             "|||kept",
		string(recs[0].ID[:]): "curl/8.5|relay-1||from-default",
		string(recs[1].ID[:]): "curl/8.5|relay-1|storage_budget|from-default",
	}
	if len(got) != len(want) || len(rows) != len(want) {
		t.Fatalf("rows %v; want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("row %s: %q, want %q", id, got[id], w)
		}
	}

	// A second start finds nothing to add.
	var logs2 schemaLog
	w2 := newWriter(t, Options{URL: chURL, Database: db, Logger: logs2.logger()})
	closeWriter(t, w2)
	if strings.Contains(logs2.String(), "added missing column") || tableLayout(t, chURL, db) != layout {
		t.Errorf("second start changed the table:\n%s", logs2.String())
	}
}

// TestSchemaNoMigrate: with migrate off, a missing column stops start-up
// with an error naming it, and the table is left as it was; a complete
// table starts.
func TestSchemaNoMigrate(t *testing.T) {
	chURL, db := testDB(t)
	mustQuery(t, chURL, "", "CREATE DATABASE "+db)
	mustQuery(t, chURL, "", oldTableSQL(db, []string{"instance"}, false, "", nil))
	before := tableLayout(t, chURL, db)

	_, err := New(Options{URL: chURL, Database: db, NoMigrate: true, SpoolDir: t.TempDir(), Logger: testLogger(t)})
	wantPrefix := "chlog: table " + db + ".stream_logs: missing column(s) instance String and storage.clickhouse.migrate is false: " +
		"add them (ALTER TABLE " + db + ".stream_logs ADD COLUMN instance String AFTER user_agent) or set migrate: true"
	var se *SchemaError
	if err == nil || err.Error() != wantPrefix || !errors.Is(err, ErrSchema) || !errors.As(err, &se) || !slices.Equal(se.Columns, []string{"instance"}) {
		t.Fatalf("New: %v\nwant %s", err, wantPrefix)
	}
	if after := tableLayout(t, chURL, db); after != before {
		t.Errorf("table changed with migrate off:\nbefore %s\nafter  %s", before, after)
	}

	// The operator runs the ALTER the message names; then the relay starts.
	mustQuery(t, chURL, "", "ALTER TABLE "+db+".stream_logs ADD COLUMN instance String AFTER user_agent")
	closeWriter(t, newWriter(t, Options{URL: chURL, Database: db, NoMigrate: true}))
}

// TestSchemaForeignType: a column whose type cannot take the relay's rows
// stops start-up with one error naming the column and both types, before
// any ALTER (the missing instance column is not added); DateTime with a
// time zone is accepted and rows read back right.
func TestSchemaForeignType(t *testing.T) {
	tests := []struct {
		name   string
		retype map[string]string
		want   string // after "chlog: table DB.stream_logs: "; "" = starts
	}{
		{"status String", map[string]string{"status": "String"}, "column status has type String, the relay writes UInt16"},
		{"ttft_ms String", map[string]string{"ttft_ms": "String"}, "column ttft_ms has type String, the relay writes Nullable(UInt32)"},
		{"nullable body", map[string]string{"request_body": "Nullable(String)"}, "column request_body has type Nullable(String), the relay writes String"},
		{"wider int", map[string]string{"status": "UInt32"}, "column status has type UInt32, the relay writes UInt16"},
		{"two columns", map[string]string{"status": "String", "bytes_in": "UInt32"},
			"column status has type String, the relay writes UInt16; column bytes_in has type UInt32, the relay writes UInt64"},
		{"alias", map[string]string{"user_agent": "String ALIAS 'x'"}, "column user_agent is ALIAS String and takes no inserted value, the relay writes String"},
		{"datetime zone", map[string]string{"created_at": "DateTime('UTC')"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chURL, db := testDB(t)
			mustQuery(t, chURL, "", "CREATE DATABASE "+db)
			mustQuery(t, chURL, "", oldTableSQL(db, []string{"instance"}, false, "", tt.retype))
			before := tableLayout(t, chURL, db)
			w, err := New(Options{URL: chURL, Database: db, SpoolDir: t.TempDir(), Logger: testLogger(t)})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				r := sseRecord(1, 2)
				w.Write(r)
				closeWriter(t, w)
				got := mustQuery(t, chURL, db, "SELECT concat(request_id, ' ', toString(toUnixTimestamp(created_at)), ' ', instance) FROM stream_logs")
				if want := fmt.Sprintf("%s %d relay-1", r.ID[:], r.Start.Unix()); got != want {
					t.Errorf("row %q, want %q", got, want)
				}
				// And the relay reads it back: current servers name the
				// type DateTime('UTC') in the answer (18.16 says DateTime),
				// which the decoder once refused.
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				f, err := Find(ctx, FindOptions{URL: chURL, Database: db, SpoolDir: t.TempDir()}, r.IDString())
				if err != nil || f.Row.CreatedAt.Unix() != r.Start.Unix() {
					t.Errorf("Find: %+v, %v; want the row, created at %v", f, err, r.Start)
				}
				return
			}
			want := "chlog: table " + db + ".stream_logs: " + tt.want
			if err == nil || err.Error() != want || !errors.Is(err, ErrSchema) {
				if err == nil {
					closeWriter(t, w)
				}
				t.Fatalf("New: %v\nwant %s", err, want)
			}
			if after := tableLayout(t, chURL, db); after != before {
				t.Errorf("table changed although start-up was refused:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

// TestSchemaUpgradeWhenServerReturns: ClickHouse is down when the relay
// starts, so rows are spooled; when it comes back the replayer first adds
// the columns the old table lacks, then sends the rows, whole.
func TestSchemaUpgradeWhenServerReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a ClickHouse server of its own")
	}
	ch, chURL := servicetest.OwnClickHouse(t)
	db := "relay"
	mustQuery(t, chURL, "", "CREATE DATABASE "+db)
	mustQuery(t, chURL, "", oldTableSQL(db, []string{"instance", "truncated_reason"}, false, "", nil))
	ch.Kill()

	var logs schemaLog
	w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: 100 * time.Millisecond, Logger: logs.logger()})
	r := sseRecord(1, 2)
	r.Truncated, r.TruncatedReason = true, record.TruncMaxCapture
	w.Write(r)
	flush(t, w)
	if st := w.Stats(); st.RowsSpooled != 1 {
		t.Fatalf("row not spooled while the server is down: %+v", st)
	}
	ch.Start()
	waitFor(t, "the spooled row in ClickHouse", 60*time.Second, func() bool { return w.Stats().RowsReplayed == 1 })
	closeWriter(t, w)
	got := mustQuery(t, chURL, db, "SELECT concat(request_id, ' ', instance, ' ', truncated_reason) FROM stream_logs")
	if want := string(r.ID[:]) + " relay-1 max_capture_bytes"; got != want {
		t.Errorf("row %q, want %q\n%s", got, want, logs.String())
	}
	if !strings.Contains(logs.String(), "column=instance") || !strings.Contains(logs.String(), "column=truncated_reason") {
		t.Errorf("added columns not logged:\n%s", logs.String())
	}
}

// TestSchemaConcurrentStarts: several relays start at once on an old
// table; each adds what is missing or finds it added by another, all start
// and the table gets each column once.
func TestSchemaConcurrentStarts(t *testing.T) {
	chURL, db := testDB(t)
	mustQuery(t, chURL, "", "CREATE DATABASE "+db)
	mustQuery(t, chURL, "", oldTableSQL(db, []string{"instance", "user_agent", "truncated_reason"}, false, "", nil))
	const n = 4
	ws := make([]*Writer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		dir := t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws[i], errs[i] = New(Options{URL: chURL, Database: db, SpoolDir: dir, Logger: testLogger(t)})
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("relay %d: New: %v", i, errs[i])
			continue
		}
		closeWriter(t, ws[i])
	}
	var want []string
	for _, c := range columns {
		want = append(want, c.name+" "+c.typ)
	}
	if got := tableLayout(t, chURL, db); got != strings.Join(want, ", ") {
		t.Errorf("table after concurrent starts:\n%s\nwant\n%s", got, strings.Join(want, ", "))
	}
}

// TestTTLNotAlteredWithMigrateOff: with migrate off the relay runs no
// ALTER, the TTL's included; with it on, the ALTER is sent (here to a closed
// port: the warning says it was tried, and the start goes on: a TTL that
// cannot be set never stops inserts). 18.16 has no TTL, so the server's
// version is given.
func TestTTLNotAlteredWithMigrateOff(t *testing.T) {
	for _, noMigrate := range []bool{true, false} {
		var log schemaLog
		o := Options{URL: closedPortURL(t), TTLDays: 3, NoMigrate: noMigrate, SpoolDir: t.TempDir(), Logger: log.logger()}
		o.setDefaults()
		w := makeWriter(context.Background(), o)
		w.ch = newClient(&w.o)
		err := w.applyTTL(context.Background(), serverVersion{19, 6}, "stream_logs", "")
		w.cancel()
		tried := strings.Contains(log.String(), "could not set the TTL")
		skipped := strings.Contains(log.String(), "migrate is off")
		if err != nil || tried == noMigrate || skipped != noMigrate {
			t.Errorf("migrate off %v: err %v, ALTER tried %v, skipped %v; log:\n%s", noMigrate, err, tried, skipped, log.String())
		}
	}
}

// TestHasTTLDays: the TTL applyTTL sets is recognized in engine_full as
// current servers write it, so a start with it set runs no ALTER (18.16,
// here, has no TTL: the ALTER itself is not run in these tests).
func TestHasTTLDays(t *testing.T) {
	const engine = "MergeTree PARTITION BY toYYYYMMDD(created_at) ORDER BY (route, created_at) TTL created_at + toIntervalDay(30) SETTINGS index_granularity = 1024"
	if !hasTTLDays(engine, 30) || hasTTLDays(engine, 3) || hasTTLDays(engine, 300) || hasTTLDays("MergeTree ORDER BY route", 30) {
		t.Fatal("hasTTLDays does not tell 30 days from 3, 300 or none")
	}
}
