package chlog

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// distinctRecord returns a record whose every column differs from those of
// the records made with another i: a row whose columns were not moved
// together shows as a mismatch.
func distinctRecord(i int, route string, start time.Time) *record.Record {
	r := sseRecord(i, 1+i%4)
	r.Route, r.Start = route, start
	r.Tenant, r.KeyID, r.Instance = fmt.Sprintf("tenant-%d", i), fmt.Sprintf("key%d", i), fmt.Sprintf("relay-%d", i)
	r.Method, r.Path, r.Upstream = fmt.Sprintf("M%d", i), fmt.Sprintf("/p/%d", i), fmt.Sprintf("http://u%d", i)
	r.Status = 200 + i
	r.TTFB, r.TTFT, r.Duration = time.Duration(i)*time.Millisecond, time.Duration(2*i)*time.Millisecond, time.Duration(3*i)*time.Millisecond
	if i%3 == 0 {
		r.TTFB, r.TTFT = record.None, record.None // nulls move with their rows too
		r.TokensIn, r.TokensOut = -1, -1
	} else {
		r.TokensIn = int64(10 * i)
	}
	r.Model, r.ClientIP, r.UserAgent = fmt.Sprintf("model-%d", i), fmt.Sprintf("10.0.0.%d", i), fmt.Sprintf("ua/%d", i)
	r.ErrorType = fmt.Sprintf("e%d", i)
	r.RequestHeaders = fmt.Appendf(r.RequestHeaders[:0], `{"x-i":"%d"}`, i)
	r.ResponseHeaders = fmt.Appendf(r.ResponseHeaders[:0], `{"x-o":"%d"}`, i)
	r.SetRequestBody(fmt.Appendf(nil, `{"i":%d}`, i))
	r.BytesIn, r.BytesOut = int64(100+i), int64(1000+i)
	if i%4 == 1 {
		r.Truncated, r.TruncatedReason = true, record.TruncMaxCapture
	}
	return r
}

// decodeOne is the row r becomes in a block of its own.
func decodeOne(t *testing.T, r *record.Record) Row {
	t.Helper()
	b := newBlock()
	b.add(r)
	rows, err := DecodeRows(encodeRecords(t, b))
	if err != nil || len(rows) != 1 {
		t.Fatalf("single-row block: %d rows, %v", len(rows), err)
	}
	return rows[0]
}

// TestEncodeSortsRowsByKey: a block encodes its rows in the table's key
// order, (route, created_at), with rows of equal keys in the order they
// were added, each row whole (every column moved with it), and first and
// last naming the rows at either end, as a spool file's name must.
func TestEncodeSortsRowsByKey(t *testing.T) {
	t0 := time.Unix(1_750_000_000, 0)
	adds := []struct {
		route string
		sec   int
	}{
		{"openai", 5}, {"anthropic", 7}, {"openai", 2}, {"tts", 1}, {"openai", 2},
		{"anthropic", 3}, {"openai", 9}, {"anthropic", 3}, {"gemini", 4}, {"openai", 2},
	}
	// Order: routes by name, then second, then the order added.
	want := []int{5, 7, 1, 8, 2, 4, 9, 0, 6, 3}

	b := newBlock()
	var recs []*record.Record
	for i, a := range adds {
		r := distinctRecord(i, a.route, t0.Add(time.Duration(a.sec)*time.Second))
		recs = append(recs, r)
		b.add(r)
	}
	native := encodeRecords(t, b)
	rows, err := DecodeRows(native)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(recs) {
		t.Fatalf("%d rows, want %d", len(rows), len(recs))
	}
	for k, i := range want {
		if got, exp := rows[k], decodeOne(t, recs[i]); !reflect.DeepEqual(got, exp) {
			t.Errorf("row %d: got %+v\nwant record %d: %+v", k, got, i, exp)
		}
	}
	n, first, last, err := countRows(native)
	if err != nil || n != len(recs) {
		t.Fatalf("countRows: %d, %v", n, err)
	}
	if first != string(b.first[:]) || last != string(b.last[:]) {
		t.Errorf("block first, last = %s, %s; the encoding's are %s, %s", b.first[:], b.last[:], first, last)
	}
	if first != string(recs[want[0]].ID[:]) || last != string(recs[want[len(want)-1]].ID[:]) {
		t.Errorf("first, last = %s, %s; want records %d and %d", first, last, want[0], want[len(want)-1])
	}

	// Encoding again (a retry re-encodes nothing, but a recycled block's
	// scratch is reused): the same rows added again give the same bytes.
	b.reset()
	for _, r := range recs {
		b.add(r)
	}
	if again := encodeRecords(t, b); string(again) != string(native) {
		t.Errorf("the same rows encoded again differ (%d vs %d bytes)", len(again), len(native))
	}
}

// TestEncodeKeepsSortedBlock: a block already in key order is encoded as
// it was added, and its first and last stay.
func TestEncodeKeepsSortedBlock(t *testing.T) {
	t0 := time.Unix(1_750_000_000, 0)
	b := newBlock()
	var recs []*record.Record
	for i := range 6 {
		r := distinctRecord(i, "openai", t0.Add(time.Duration(i/2)*time.Second))
		recs = append(recs, r)
		b.add(r)
	}
	first, last := b.first, b.last
	rows, err := DecodeRows(encodeRecords(t, b))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if rows[i].RequestID != string(r.ID[:]) {
			t.Fatalf("row %d is %s, want %s", i, rows[i].RequestID, r.ID[:])
		}
	}
	if b.first != first || b.last != last {
		t.Errorf("first, last changed on a sorted block")
	}
}

// BenchmarkSortRows: a block of 2,000 rows of 20-chunk answers over two
// routes, added out of key order, sorted (the permutation of every
// column) as encode does before writing it.
func BenchmarkSortRows(bm *testing.B) {
	t0 := time.Unix(1_750_000_000, 0)
	var recs []*record.Record
	for i := range 2000 {
		route := []string{"openai", "anthropic"}[i%2]
		r := sseRecord(i, 20)
		r.Route, r.Start = route, t0.Add(time.Duration((i*7)%50)*time.Second)
		recs = append(recs, r)
	}
	b := newBlock()
	bm.ReportAllocs()
	bm.ResetTimer()
	for range bm.N {
		bm.StopTimer()
		b.reset()
		for _, r := range recs {
			b.add(r)
		}
		bm.StartTimer()
		b.sortRows()
	}
}
