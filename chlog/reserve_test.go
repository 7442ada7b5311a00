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
	// state reads, in one hold of the lock, whether the block wants to
	// grow, its chunk bytes' capacity and the growths so far.
	state := func() (grow bool, capacity int, grown int64) {
		w.mu.Lock()
		defer w.mu.Unlock()
		_, grow = w.cur.measure(w.o.BatchBytes, w.keep)
		return grow, cap(w.cur.chunkData.Buf), w.grown.Load()
	}
	for round := range 2 {
		for {
			grow, before, g0 := state()
			if grow {
				// The grower is woken (or about to be): it grows once
				// more, from at least this capacity.
				waitFor(t, "the grower's growth", 30*time.Second, func() bool { return w.grown.Load() > g0 })
				if _, got, _ := state(); got < before+before/2 {
					t.Fatalf("round %d: chunk bytes' capacity %d after the grower, want at least %d", round, got, before+before/2)
				}
				break
			}
			if i > 20000 {
				t.Fatalf("no buffer crowded after %d rows", i)
			}
			write()
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
