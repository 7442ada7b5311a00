package chlog

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"testing"
	"time"
)

// TestGrowerGrowsAheadIntact: rows written until the current block's chunk
// bytes pass three quarters of a buffer of at least growAheadMin wake the
// grower, which grows the buffer half again, off Write's path; twice, rows
// written between. Every row then reaches the real ClickHouse with its own
// chunks, byte for byte (an MD5 of each row's chunks, computed by the
// server), so the bytes moved into the grown buffers are the rows' own.
func TestGrowerGrowsAheadIntact(t *testing.T) {
	chURL, db := testDB(t)
	w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: time.Hour})
	want := map[string]string{} // request_id: MD5 of its chunks
	capNow := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return cap(w.cur.chunkData.Buf)
	}
	i := 0
	write := func() {
		r := sseRecord(i, 1+i%20)
		r.AddChunk(fmt.Appendf(nil, "data: row %d\n\n", i), time.Second)
		sum := md5.Sum(r.Chunks.Data[:r.Chunks.Ends[len(r.Chunks.Ends)-1]])
		want[string(r.ID[:])] = hex.EncodeToString(sum[:])
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for round := int64(1); round <= 2; round++ {
		for {
			w.mu.Lock()
			near := w.cur.nearFull()
			w.mu.Unlock()
			if near {
				break
			}
			if i > 20000 {
				t.Fatalf("no buffer near full after %d rows", i)
			}
			write()
		}
		before := capNow()
		waitFor(t, "the grower's growth", 30*time.Second, func() bool { return w.grown.Load() >= round })
		if got := capNow(); got < before+before/2 {
			t.Fatalf("round %d: chunk bytes' capacity %d after the grower, want at least %d", round, got, before+before/2)
		}
		for range 20 {
			write() // into the grown buffers
		}
	}
	flush(t, w)
	closeWriter(t, w)
	rows := rowsOf(t, mustQuery(t, chURL, db,
		"SELECT request_id, lower(hex(MD5(arrayStringConcat(response_chunks)))) AS sum FROM stream_logs FORMAT JSONEachRow"))
	if len(rows) != len(want) {
		t.Fatalf("%d rows in ClickHouse, want %d", len(rows), len(want))
	}
	for _, r := range rows {
		id, sum := r["request_id"].(string), r["sum"].(string)
		if want[id] != sum {
			t.Fatalf("row %s: chunks' MD5 %s, want %s", id, sum, want[id])
		}
	}
	t.Logf("%d rows, %d growths by the grower", len(rows), w.grown.Load())
}
