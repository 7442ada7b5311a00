package chlog

import (
	"bytes"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// heldBody owns a request body the way a *fasthttp.Request does for a
// record that borrows it.
type heldBody struct{ b []byte }

func (h *heldBody) Body() []byte { return h.b }

// bodyRecord is a full-capture chat completion with a borrowed request
// body of len(body) bytes and a 20-chunk answer, admitted by w.
func bodyRecord(w *Writer, i int, body *heldBody, chunk []byte) *record.Record {
	r := record.Acquire(4 << 20)
	r.ID = newID(i)
	r.Start = time.Now()
	r.Route, r.Kind, r.Capture, r.Status = "openai", record.KindSSE, true, 200
	r.Method, r.Path = "POST", "/v1/chat/completions"
	r.RequestHeaders = append(r.RequestHeaders, `{"content-type":"application/json"}`...)
	if !w.Admit(r) {
		panic("refused with an empty budget")
	}
	r.BorrowRequestBody(body.b, body)
	r.LastReader() // as the relay's last sink reads it
	r.BytesIn = int64(len(body.b))
	for c := range 20 {
		r.AddChunk(chunk, time.Duration(c)*time.Millisecond)
	}
	return r
}

// bigBody is a JSON request body of n bytes.
func bigBody(n int) *heldBody {
	b := append([]byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"`), bytes.Repeat([]byte("x"), n)...)
	return &heldBody{b: append(b[:n-3], `"}]`...)}
}

// BenchmarkWrite1MiBBody: the relay-path cost of a row with a 1 MiB
// request body (borrowed by the record, not copied) and a 20-chunk answer:
// admission, capture and Write into the current block, which is cut every
// BatchBytes and recycled as a sent block would be (no I/O). Per row: one
// copy of the body (into the block's column); no allocation once the
// blocks have grown.
func BenchmarkWrite1MiBBody(b *testing.B) {
	w := newWriter(b, Options{SpoolDir: b.TempDir(), FlushInterval: time.Hour, MaxBufferBytes: 1 << 30})
	body := bigBody(1 << 20)
	chunk := []byte("data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\n")
	i := 0
	for ; i < 40; i++ { // grow two blocks, as a running writer has
		writeRecycled(b, w, bodyRecord(w, i, body, chunk))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body.b)))
	for b.Loop() {
		writeRecycled(b, w, bodyRecord(w, i, body, chunk))
		i++
	}
	b.StopTimer()
	closeWriter(b, w)
}

// writeRecycled writes r and releases it; a full block is cut and
// recycled at once, as if sent.
func writeRecycled(t testing.TB, w *Writer, r *record.Record) {
	w.mu.Lock()
	full := w.cur.bytes+len(r.RequestBody) > w.o.BatchBytes || w.cur.rows+1 >= w.o.BatchRows
	w.mu.Unlock()
	if full {
		w.mu.Lock()
		blk := w.cutLocked()
		w.mu.Unlock()
		w.budget.release(int64(blk.held))
		w.recycle(blk)
	}
	if err := w.Write(r); err != nil {
		t.Fatal(err)
	}
	record.Release(r)
}

// BenchmarkSpool1MiBBody: rows with a 1 MiB request body end to end in
// embedded mode: Write, then every 16 rows a Flush that encodes the block
// and writes it to a spool file (fsync included).
func BenchmarkSpool1MiBBody(b *testing.B) {
	w := newWriter(b, Options{SpoolDir: b.TempDir(), FlushInterval: time.Hour, MaxBufferBytes: 1 << 30, SpoolMaxBytes: 64 << 20})
	body := bigBody(1 << 20)
	chunk := []byte("data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\n")
	i := 0
	write := func() {
		r := bodyRecord(w, i, body, chunk)
		if err := w.Write(r); err != nil {
			b.Fatal(err)
		}
		record.Release(r)
		if i++; i%16 == 0 {
			flush(b, w)
		}
	}
	for range 48 { // grow the blocks and the encode buffer
		write()
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body.b)))
	for b.Loop() {
		write()
	}
	b.StopTimer()
	closeWriter(b, w)
}

// BenchmarkWriteSSERows: the relay-path cost of typical rows (a small body,
// 20 chunks of about 130 bytes, full capture) into blocks of BatchRows
// (2000) rows, each cut and recycled as a sent block is (no I/O): what
// full capture adds to a request before any encoding or insert. The
// blocks' byte bound is set past 2000 such rows, so that Write never cuts
// one itself: a block it cut went to the spool, and a long run filled the
// spool past its cap (Close then failed the benchmark).
func BenchmarkWriteSSERows(b *testing.B) {
	w := newWriter(b, Options{SpoolDir: b.TempDir(), FlushInterval: time.Hour, MaxBufferBytes: 1 << 30,
		BatchRows: 2000, BatchBytes: 64 << 20})
	body := &heldBody{b: []byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello there, how are you?"}]}`)}
	chunk := []byte("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" word\"}}]}\n\n")
	i := 0
	for ; i < 6000; i++ { // grow the blocks, as a running writer has
		writeRecycled(b, w, bodyRecord(w, i, body, chunk))
	}
	b.ReportAllocs()
	for b.Loop() {
		writeRecycled(b, w, bodyRecord(w, i, body, chunk))
		i++
	}
	b.StopTimer()
	closeWriter(b, w)
}

// BenchmarkWrite1MiBBodyTaken: BenchmarkWrite1MiBBody with a body owner
// that hands its buffer over, as *fasthttp.Request does: the block takes
// the body by reference (no copy), and the owner's next body is read into
// a buffer a recycled block gave back (the read is the loop's one copy,
// standing for the socket read that fills the buffer in the relay).
func BenchmarkWrite1MiBBodyTaken(b *testing.B) {
	w := newWriter(b, Options{SpoolDir: b.TempDir(), FlushInterval: time.Hour, MaxBufferBytes: 1 << 30})
	body := bigBody(1 << 20).b
	owner, none := &swapOwner{}, &heldBody{}
	chunk := []byte("data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\n")
	row := func(i int) *record.Record {
		owner.b = append(owner.b[:0], body...)
		r := bodyRecord(w, i, none, chunk)
		r.BorrowRequestBody(owner.b, owner)
		r.LastReader() // as the relay's last sink reads it
		return r
	}
	i := 0
	for ; i < 40; i++ {
		writeRecycled(b, w, row(i))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		writeRecycled(b, w, row(i))
		i++
	}
	b.StopTimer()
	closeWriter(b, w)
}
