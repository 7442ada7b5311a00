package chlog

import (
	"context"
	"fmt"
	"github.com/stream-relay/stream-relay/record"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkWrite measures the relay-path cost of one typical SSE row
// (50 chunks, full capture) into the current block; the sender is parked.
func BenchmarkWrite(b *testing.B) {
	w := newWriter(b, Options{SpoolDir: b.TempDir(), BatchRows: 1 << 30, BatchBytes: 1 << 30, FlushInterval: time.Hour})
	r := sseRecord(1, 50)
	b.ReportAllocs()
	b.SetBytes(int64(len(r.Chunks.Data) + len(r.RequestBody)))
	n := 0
	for b.Loop() {
		w.Write(r)
		if n++; n == 2000 { // keep memory flat: reset like a sent block would
			w.mu.Lock()
			w.cur.reset()
			w.mu.Unlock()
			n = 0
		}
	}
	b.StopTimer()
	w.mu.Lock()
	w.cur.reset()
	w.mu.Unlock()
	closeWriter(b, w)
}

// BenchmarkInsert measures rows/s sustained into the real server with
// blocks of the given size (each block flushed synchronously, so nothing is
// spooled), and the bytes on disk per row from system.parts.
func BenchmarkInsert(b *testing.B) {
	chURL, _ := testDB(b)
	for _, rows := range []int{500, 2000, 5000} {
		b.Run(strconv.Itoa(rows), func(b *testing.B) {
			_, db := testDB(b)
			w := newWriter(b, Options{URL: chURL, Database: db, BatchRows: rows, FlushInterval: time.Hour})
			recs := variedRecords(256)
			b.ReportAllocs()
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				r := recs[i%len(recs)]
				r.ID = newID(i)
				w.Write(r)
				if i%rows == rows-1 {
					if err := w.Flush(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := w.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
			closeWriter(b, w)
			if st := w.Stats(); st.RowsSpooled > 0 {
				b.Fatalf("%d rows spooled", st.RowsSpooled)
			}
			mustQuery(b, chURL, db, "OPTIMIZE TABLE stream_logs FINAL")
			perRow := mustQuery(b, chURL, "", "SELECT sum(bytes_on_disk) / sum(rows) FROM system.parts WHERE active AND database = '"+db+"' AND table = 'stream_logs'")
			if v, err := strconv.ParseFloat(perRow, 64); err == nil {
				b.ReportMetric(v, "disk_B/row")
			}
		})
	}
}

// variedRecords are typical SSE rows whose chunks carry words drawn at random
// from a small vocabulary, so the disk size is not that of identical rows.
func variedRecords(n int) []*record.Record {
	words := strings.Fields("the a of to and in is it that for you was with on as have but be they at one this from or had by not word what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part")
	recs := make([]*record.Record, n)
	for i := range recs {
		r := sseRecord(i, 0)
		for c := range 50 {
			chunk := fmt.Sprintf("data: {\"id\":\"chatcmpl-%d\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" %s\"}}]}\n\n", rand.Int64(), words[rand.IntN(len(words))])
			r.AddChunk([]byte(chunk), time.Duration(180+rand.IntN(40)*c)*time.Millisecond)
		}
		recs[i] = r
	}
	return recs
}
