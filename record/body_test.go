package record

import (
	"bytes"
	"testing"
	"time"
)

// owned is a body owner whose current body can be swapped, as fasthttp
// swaps a request's body buffer when it resets the request.
type owned struct{ b []byte }

func (o *owned) Body() []byte { return o.b }

// budgetOf charges against a fixed number of bytes.
type budgetOf struct{ left int }

func (b *budgetOf) Charge(r *Record, n int) bool {
	if n > b.left {
		return false
	}
	b.left -= n
	r.Charged += int64(n)
	return true
}

// TestBorrowRequestBody: a borrowed body is referenced, not copied,
// truncated at the capture limit, charged by its length, and never kept by
// the pool.
func TestBorrowRequestBody(t *testing.T) {
	o := &owned{b: []byte("0123456789")}
	r := Acquire(4)
	bud := &budgetOf{left: 100}
	r.Budget, r.Capture = bud, true
	r.BorrowRequestBody(o.b, o)
	if string(r.RequestBody) != "0123" || !r.Truncated || &r.RequestBody[0] != &o.b[0] {
		t.Fatalf("body %q truncated %v; want the owner's first 4 bytes, by reference", r.RequestBody, r.Truncated)
	}
	if r.Charged != 4 || bud.left != 96 {
		t.Errorf("charged %d; want the 4 bytes a row holds", r.Charged)
	}
	if !r.BorrowedBodyValid() || string(r.RequestBody) != "0123" {
		t.Fatal("valid borrowed body dropped")
	}
	Release(r)
	if r.RequestBody != nil {
		t.Fatal("the pool kept a borrowed body")
	}
	r2 := Acquire(1 << 20)
	defer Release(r2)
	r2.SetRequestBody([]byte("abc")) // the record's own buffer again
	if string(r2.RequestBody) != "abc" || string(o.b) != "0123456789" {
		t.Fatalf("body %q, owner's %q", r2.RequestBody, o.b)
	}
}

// TestBorrowedBodyGone: once the owner no longer holds the borrowed bytes
// (fasthttp reset the request), the record drops them instead of reading
// memory another request may be using.
func TestBorrowedBodyGone(t *testing.T) {
	o := &owned{b: []byte(`{"model":"m"}`)}
	r := Acquire(1 << 20)
	defer Release(r)
	r.Capture = true
	r.BorrowRequestBody(o.b, o)
	o.b = nil
	if r.BorrowedBodyValid() || r.RequestBody != nil {
		t.Fatalf("valid %v body %q after the owner let go", r.BorrowedBodyValid(), r.RequestBody)
	}
	o2 := &owned{b: bytes.Repeat([]byte("y"), 10)}
	r.BorrowRequestBody(o2.b, o2)
	o2.b = bytes.Repeat([]byte("y"), 10) // same length, another buffer
	if r.BorrowedBodyValid() {
		t.Fatal("a body in another buffer taken for the borrowed one")
	}
}

// TestBorrowRequestBodyOverBudget: with no room for the body, nothing is
// captured and capture stops, as for a copied body.
func TestBorrowRequestBodyOverBudget(t *testing.T) {
	o := &owned{b: bytes.Repeat([]byte("z"), 100)}
	r := Acquire(1 << 20)
	defer Release(r)
	r.Budget, r.Capture = &budgetOf{left: 10}, true
	r.BorrowRequestBody(o.b, o)
	if r.Capture || len(r.RequestBody) != 0 || r.TruncatedReason != TruncStorageBudget || r.Charged != 0 {
		t.Fatalf("capture %v body %d reason %q charged %d", r.Capture, len(r.RequestBody), r.TruncatedReason, r.Charged)
	}
}

// BenchmarkRequestBody1MiB: capturing a 1 MiB request body by copy (a
// buffer the pool does not keep, so allocated each time) and by reference.
func BenchmarkRequestBody1MiB(b *testing.B) {
	o := &owned{b: bytes.Repeat([]byte("x"), 1<<20)}
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(o.b)))
		for b.Loop() {
			r := Acquire(4 << 20)
			r.Capture = true
			r.SetRequestBody(o.b)
			Release(r)
		}
	})
	b.Run("borrow", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(o.b)))
		for b.Loop() {
			r := Acquire(4 << 20)
			r.Capture = true
			r.BorrowRequestBody(o.b, o)
			r.BorrowedBodyValid()
			Release(r)
		}
	})
}

// TestBorrowRequestBodyMeta: without capture the body is referenced for
// reading, not charged: a row without bodies holds none of it.
func TestBorrowRequestBodyMeta(t *testing.T) {
	o := &owned{b: bytes.Repeat([]byte("m"), 100)}
	r := Acquire(1 << 20)
	defer Release(r)
	r.Budget = &budgetOf{left: 600} // room for chunk times, not the body
	r.BorrowRequestBody(o.b, o)
	if len(r.RequestBody) != 100 || r.Charged != 0 || r.Truncated {
		t.Fatalf("body %d charged %d truncated %v", len(r.RequestBody), r.Charged, r.Truncated)
	}
	r.AddChunk([]byte("audio"), 0)
	if r.Chunks.Len() != 1 {
		t.Fatal("chunk times lost")
	}
}

// TestRefusedBodyLeavesMetaWithTimes: a request body the storage budget
// refuses makes the row meta only (truncated, storage_budget), as a row
// degraded at admission is: its chunk times are still kept.
func TestRefusedBodyLeavesMetaWithTimes(t *testing.T) {
	for _, borrow := range []bool{false, true} {
		r := Acquire(1 << 20)
		r.Budget, r.Capture = &budgetOf{left: 512}, true
		body := bytes.Repeat([]byte("x"), 4096)
		if borrow {
			r.BorrowRequestBody(body, &owned{b: body})
		} else {
			r.SetRequestBody(body)
		}
		for i := range 3 {
			r.AddChunk([]byte("chunk"), time.Duration(i+1)*time.Millisecond)
		}
		if r.Capture || !r.Truncated || r.TruncatedReason != TruncStorageBudget || len(r.RequestBody) != 0 ||
			len(r.Chunks.Data) != 0 || len(r.Chunks.AtMS) != 3 || r.Chunks.AtMS[2] != 3 {
			t.Errorf("borrow %v: capture %v truncated %v (%q) body %d data %q times %v", borrow, r.Capture, r.Truncated,
				r.TruncatedReason, len(r.RequestBody), r.Chunks.Data, r.Chunks.AtMS)
		}
		Release(r)
	}
}

// TestBorrowRequestBodyMetaOverLimit: on a meta route a request body past
// max_capture_bytes is cut for reading only: nothing is stored, so the row
// is not truncated (it said truncated, max_capture_bytes). Captured, the
// same body is.
func TestBorrowRequestBodyMetaOverLimit(t *testing.T) {
	for _, capture := range []bool{false, true} {
		o := &owned{b: bytes.Repeat([]byte("m"), 100)}
		r := Acquire(64)
		r.Capture = capture
		r.BorrowRequestBody(o.b, o)
		if len(r.RequestBody) != 64 || r.Truncated != capture {
			t.Errorf("capture %v: body %d, truncated %v", capture, len(r.RequestBody), r.Truncated)
		}
		Release(r)
	}
}
