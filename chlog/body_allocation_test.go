//go:build !race

package chlog

import (
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// bodyRowWriter returns a write of one steady-state row with a 1 MiB
// request body into w (admission, the body borrowed by the record from
// the owner borrow gives, a 20-chunk answer, Write into the current block,
// and every few rows a block cut and recycled as a sent one is), after
// growing w's blocks as a running writer's have.
func bodyRowWriter(t *testing.T, w *Writer, borrow func() (body []byte, owner record.BodyOwner)) func() {
	chunk := []byte("data: {\"choices\":[{\"delta\":{\"content\":\"hello\"}}]}\n\n")
	id := newID(1)
	write := func() {
		r := record.Acquire(4 << 20)
		r.ID, r.Start = id, time.Now()
		r.Route, r.Kind, r.Capture, r.Status = "openai", record.KindSSE, true, 200
		if !w.Admit(r) {
			t.Fatal("refused with an empty budget")
		}
		r.BorrowRequestBody(borrow())
		r.LastReader() // as the relay's last sink reads it
		for c := range 20 {
			r.AddChunk(chunk, time.Duration(c)*time.Millisecond)
		}
		writeRecycled(t, w, r)
	}
	for range 20 {
		write()
	}
	return write
}

// TestLargeBodyCaptureAllocs: the steady-state capture path of a request
// with a 1 MiB body from an owner that cannot hand its buffer over
// allocates nothing once the writer's blocks have grown: the body is
// copied once, into a column with room for it.
func TestLargeBodyCaptureAllocs(t *testing.T) {
	w := newWriter(t, Options{SpoolDir: t.TempDir(), FlushInterval: time.Hour, MaxBufferBytes: 1 << 30, BatchBytes: 4 << 20})
	body := bigBody(1 << 20)
	write := bodyRowWriter(t, w, func() ([]byte, record.BodyOwner) { return body.b, body })
	if n := testing.AllocsPerRun(40, write); n != 0 {
		t.Errorf("%v allocations per 1 MiB-body row, want 0", n)
	}
	w.mu.Lock()
	rows, size := w.cur.rows, w.cur.reqBody.Buf
	w.mu.Unlock()
	if rows == 0 || len(size) != rows*len(body.b) {
		t.Errorf("current block: %d rows, %d body bytes", rows, len(size))
	}
}

// TestTakenBodyCaptureAllocs: as TestLargeBodyCaptureAllocs, with a body
// owner that hands its buffer over (as *fasthttp.Request does): the block
// takes each body by reference, gives the buffers back when recycled, and
// the owner reads its next body into one of them. Nothing is allocated in
// steady state, and no body byte is copied into the block.
func TestTakenBodyCaptureAllocs(t *testing.T) {
	w := newWriter(t, Options{SpoolDir: t.TempDir(), FlushInterval: time.Hour, MaxBufferBytes: 1 << 30, BatchBytes: 4 << 20})
	body := bigBody(1 << 20).b
	owner := &swapOwner{}
	write := bodyRowWriter(t, w, func() ([]byte, record.BodyOwner) {
		owner.b = append(owner.b[:0], body...) // the next request's body read
		return owner.b, owner
	})
	if n := testing.AllocsPerRun(40, write); n != 0 {
		t.Errorf("%v allocations per 1 MiB-body row taken by reference, want 0", n)
	}
	w.mu.Lock()
	rows, copied, taken := w.cur.rows, len(w.cur.reqBody.Buf), len(w.cur.reqBody.taken)
	w.mu.Unlock()
	if rows == 0 || copied != 0 || taken != rows {
		t.Errorf("current block: %d rows, %d body bytes copied, %d bodies taken", rows, copied, taken)
	}
}
