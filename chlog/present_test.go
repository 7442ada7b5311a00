package chlog

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/record"
)

// encodeGroups encodes recs as one raw Native block per group, concatenated
// (a group-committed spool file), and returns the bytes and the meta.
func encodeGroups(t testing.TB, seq uint64, groups ...[]*record.Record) ([]byte, blockMeta) {
	t.Helper()
	var out []byte
	m := blockMeta{seq: seq}
	for _, g := range groups {
		b := newBlock()
		for _, r := range g {
			b.add(r)
		}
		var buf proto.Buffer
		if err := b.encode(&buf); err != nil {
			t.Fatal(err)
		}
		out = append(out, buf.Buf...)
		if m.rows == 0 {
			m.first = b.first
		}
		m.last = b.last
		m.rows += b.rows
	}
	return out, m
}

// idCounts returns how often each request_id is in the table.
func idCounts(t testing.TB, chURL, db string) map[string]int {
	t.Helper()
	got := map[string]int{}
	out := mustQuery(t, chURL, db, "SELECT request_id, count() FROM stream_logs GROUP BY request_id FORMAT TSV")
	for line := range strings.Lines(out) {
		id, n, _ := strings.Cut(strings.TrimSpace(line), "\t")
		var c int
		fmt.Sscan(n, &c)
		got[id] = c
	}
	return got
}

// TestPresenceCheck settles blocks whose insert outcome is unknown against
// the real server: rows already stored are never sent again, missing rows
// are, whole and unchanged. Every id stored exactly once afterwards proves
// both: a stored row sent again would be there twice, a missing row not
// sent not at all. The blocks are two concatenated Native blocks
// (a group-committed spool file) whose rows span two days (two partitions),
// the cases where an insert can land in part.
func TestPresenceCheck(t *testing.T) {
	tests := []struct {
		name   string
		stored func(i int) bool // rows inserted before the check
	}{
		{"some present", func(i int) bool { return i%3 == 0 || i < 4 }},
		{"first block present", func(i int) bool { return i < 6 }},
		{"all present", func(int) bool { return true }},
		{"none present", func(int) bool { return false }},
	}
	chURL, _ := testDB(t)
	for n, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, db := testDB(t)
			inserts := 0
			w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: time.Hour,
				OnInsert: func(time.Duration, int, error) { inserts++ }})
			defer closeWriter(t, w)

			var recs []*record.Record
			day := time.Now().Truncate(time.Second)
			for i := range 12 {
				r := sseRecord(i, 3)
				if i%2 == 1 {
					r.Start = day.Add(-26 * time.Hour) // yesterday's partition
				}
				recs = append(recs, r)
			}
			native, m := encodeGroups(t, uint64(100+n), recs[:6], recs[6:])

			var pre []*record.Record
			for i, r := range recs {
				if tt.stored(i) {
					pre = append(pre, r)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if len(pre) > 0 {
				b, _ := encodeGroups(t, 1, pre)
				if err := w.ch.insert(ctx, b, "test-pre-"+db, ""); err != nil {
					t.Fatal(err)
				}
			}

			r, err := w.lookupMissing(ctx, m, native)
			if err != nil {
				t.Fatal(err)
			}
			switch missing := len(recs) - len(pre); {
			case missing == 0 && r.native != nil:
				t.Errorf("all present: %d rows to re-send; want nothing", r.rows)
			case missing == len(recs) && (r.rows != missing || &r.native[0] != &native[0]):
				t.Errorf("none present: re-send %d rows; want the original bytes", r.rows)
			case missing > 0 && missing < len(recs) && (r.rows != missing || r.token == queryID(m)):
				t.Errorf("re-send %d rows under token %q; want the %d missing, under a token of their own", r.rows, r.token, missing)
			}
			unknown, err := w.deliver(ctx, m, native, true, 0)
			if err != nil || unknown {
				t.Fatalf("deliver: unknown %v, err %v", unknown, err)
			}
			if inserts != 1 {
				t.Errorf("OnInsert called %d times; want once", inserts)
			}
			if got := w.Stats().RowsWritten; got != int64(len(recs)) {
				t.Errorf("RowsWritten %d; want %d", got, len(recs))
			}

			counts := idCounts(t, chURL, db)
			for _, r := range recs {
				if c := counts[string(r.ID[:])]; c != 1 {
					t.Errorf("request_id %s stored %d times; want exactly once", r.ID[:], c)
				}
			}
			if len(counts) != len(recs) {
				t.Errorf("%d distinct ids stored; want %d", len(counts), len(recs))
			}
			// The re-sent rows are the rows that were written, column by column.
			out := mustQuery(t, chURL, db, `SELECT request_id, toUnixTimestamp(created_at) AS ts, route, tenant_id, key_id, model,
				method, path, upstream, status, error_type, ttfb_ms, ttft_ms, duration_ms, bytes_in, bytes_out, chunk_count,
				tokens_in, tokens_out, request_headers, response_headers, request_body, response_chunks, chunk_offsets_ms,
				truncated, client_ip, user_agent, instance FROM stream_logs FORMAT JSONEachRow`)
			got := map[string]map[string]any{}
			for _, row := range rowsOf(t, out) {
				got[row["request_id"].(string)] = row
			}
			for _, r := range recs {
				for k, v := range expectedRow(r) {
					if g := fmt.Sprint(got[string(r.ID[:])][k]); g != v {
						t.Errorf("%s %s = %s; want %s", r.ID[:8], k, g, v)
					}
				}
			}
		})
	}
}

// TestPresenceSQL: the lookup is bounded by the block's seconds and never
// carries an id in the statement.
func TestPresenceSQL(t *testing.T) {
	lo, hi := time.Unix(1_750_000_000, 0), time.Unix(1_750_000_042, 0)
	got := presenceSQL("relay", "stream_logs", lo, hi)
	want := "SELECT DISTINCT request_id FROM relay.stream_logs WHERE created_at >= toDateTime(1750000000) AND created_at <= toDateTime(1750000042) AND request_id IN ids FORMAT TSV"
	if got != want {
		t.Fatalf("presenceSQL =\n%s\nwant\n%s", got, want)
	}
}

// TestPresenceNoTable: a dropped table holds none of the rows; the check
// says "send all" instead of failing forever.
func TestPresenceNoTable(t *testing.T) {
	chURL, db := testDB(t)
	w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: time.Hour})
	defer closeWriter(t, w)
	mustQuery(t, chURL, db, "DROP TABLE stream_logs")
	native, m := encodeGroups(t, 3, roundTripRecords())
	r, err := w.lookupMissing(context.Background(), m, native)
	if err != nil {
		t.Fatal(err)
	}
	if r.rows != 4 || &r.native[0] != &native[0] {
		t.Fatalf("resend %d of %d rows (original bytes: %v); want all 4, the original bytes", r.rows, r.total, len(r.native) > 0 && &r.native[0] == &native[0])
	}
}
