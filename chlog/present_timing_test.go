package chlog

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// benchDB keeps the benchmark tables between runs: the 10M table takes
// about 15 s to fill on 18.16 (2 cores), and is reused when its count
// matches.
const benchDB = "relay_bench_presence"

// benchSpan spreads a table's rows over a week of created_at (7 daily
// partitions), so that a block's rows are a small slice of the table.
const (
	benchSpan  = 7 * 24 * 3600
	benchStart = 1_764_000_000
)

// benchID and benchTime are row n of a benchmark table, as the INSERT ...
// SELECT FROM numbers makes it.
func benchID(n int) string {
	h := md5.Sum([]byte(strconv.Itoa(n)))
	return hex.EncodeToString(h[:])
}

func benchTime(n, rows int) time.Time {
	return time.Unix(benchStart+int64(n)*benchSpan/int64(rows), 0)
}

// benchTable creates db.table with the relay's layout and fills it with rows
// rows when it does not hold that many already.
func benchTable(b *testing.B, chURL, table string, rows int) {
	b.Helper()
	mustQuery(b, chURL, "", "CREATE DATABASE IF NOT EXISTS "+benchDB)
	mustQuery(b, chURL, "", createTableSQL(benchDB, table, false))
	if mustQuery(b, chURL, "", "SELECT count() FROM "+benchDB+"."+table) == strconv.Itoa(rows) {
		return
	}
	mustQuery(b, chURL, "", "TRUNCATE TABLE "+benchDB+"."+table)
	start := time.Now()
	mustQuery(b, chURL, "", fmt.Sprintf(`INSERT INTO %s.%s (request_id, created_at, route, tenant_id, status, request_body)
		SELECT lower(hex(MD5(toString(number)))),
			toDateTime(%d + intDiv(number * %d, %d)),
			arrayElement(['openai', 'anthropic', 'tts', 'gemini'], (number %% 4) + 1),
			concat('tenant-', toString(number %% 50)),
			200,
			concat('{"model":"gpt-4o","messages":[{"role":"user","content":"hello ', toString(number), '"}]}')
		FROM numbers(%d)`, benchDB, table, benchStart, benchSpan, rows, rows))
	b.Logf("filled %s.%s with %d rows in %s", benchDB, table, rows, time.Since(start).Round(time.Millisecond))
}

// BenchmarkPresenceCheck times the lookup of a 2,000-row block whose
// insert outcome is unknown (decode, query with all ids bounded by the
// block's created_at range, compare) against a table of 10 thousand and of
// 10 million rows. The block's rows are all stored (the usual case: the
// insert was applied); the time must not grow with the table. The wait for
// an earlier attempt (a fixed 500 ms settle and a system.processes query)
// is left out: it does not depend on the table.
//
//	go test -run '^$' -bench BenchmarkPresenceCheck ./chlog/
func BenchmarkPresenceCheck(b *testing.B) {
	chURL := servicetest.ClickHouse(b)
	const blockRows = 2000
	for _, tt := range []struct {
		name string
		rows int
	}{
		{"10k", 10_000},
		{"10M", 10_000_000},
	} {
		b.Run(tt.name, func(b *testing.B) {
			table := "stream_logs_" + tt.name
			benchTable(b, chURL, table, tt.rows)

			first := tt.rows/2 - blockRows/2
			nb := newBlock()
			for i := range blockRows {
				r := sseRecord(i, 3)
				copy(r.ID[:], benchID(first+i))
				r.Start = benchTime(first+i, tt.rows)
				nb.add(r)
			}
			native, m := encodeBlock(b, nb)
			o := Options{URL: chURL, Database: benchDB, Table: table}
			o.setDefaults()
			o.Logger = testLogger(b)
			w := &Writer{o: o, log: o.Logger, ch: newClient(&o)}
			ctx := context.Background()

			b.ReportAllocs()
			b.SetBytes(int64(len(native)))
			for b.Loop() {
				r, err := w.lookupMissing(ctx, m, native)
				if err != nil {
					b.Fatal(err)
				}
				if r.native != nil {
					b.Fatalf("%d of %d rows missing; want all stored", r.rows, r.total)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/check")
		})
	}
}

// encodeBlock encodes b and returns its bytes and meta.
func encodeBlock(tb testing.TB, b *block) ([]byte, blockMeta) {
	tb.Helper()
	m := blockMeta{seq: 1, rows: b.rows, first: b.first, last: b.last}
	var buf proto.Buffer
	if err := b.encode(&buf); err != nil {
		tb.Fatal(err)
	}
	return buf.Buf, m
}
