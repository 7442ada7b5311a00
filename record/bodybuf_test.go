package record

import (
	"bytes"
	"testing"
)

// swapOwner is a body owner that gives its buffer away as
// *fasthttp.Request.SwapBody does.
type swapOwner struct{ b []byte }

func (o *swapOwner) Body() []byte { return o.b }

func (o *swapOwner) SwapBody(b []byte) []byte {
	old := o.b
	o.b = b
	return old
}

// TestTakeRequestBody: a large captured body borrowed from a swapper is
// handed over by reference (the caller gets the owner's buffer, the owner
// a buffer given back before), stays readable in the record until it is
// released, and is never kept by the record pool; small bodies, meta
// capture, bodies no longer the owner's and records not read by their last
// reader are not taken.
func TestTakeRequestBody(t *testing.T) {
	given := make([]byte, 0, 3*TakeMin)
	GiveBodyBuffer(given)

	body := bytes.Repeat([]byte("0123456789abcdef"), TakeMin/8) // 2*TakeMin bytes
	o := &swapOwner{b: append(make([]byte, 0, len(body)+100), body...)}
	orig := o.b
	r := Acquire(len(body) - 10) // the capture limit truncates
	r.Capture = true
	r.BorrowRequestBody(o.b, o)
	r.LastReader()
	got, buf := r.TakeRequestBody()
	if buf == nil {
		t.Fatal("a large borrowed body was not taken")
	}
	if &buf[0] != &orig[0] || cap(buf) != cap(orig) || len(buf) != cap(orig) {
		t.Errorf("taken buffer is not the owner's whole buffer")
	}
	if len(got) != len(body)-10 || !bytes.Equal(got, body[:len(body)-10]) || &got[0] != &orig[0] {
		t.Errorf("taken body: %d bytes, want the first %d of the owner's, by reference", len(got), len(body)-10)
	}
	if len(o.b) != 0 || cap(o.b) != cap(given) || &o.b[:1][0] != &given[:1][0] {
		t.Errorf("owner's new buffer: len %d cap %d; want the one given back, empty", len(o.b), cap(o.b))
	}
	if r.RequestBody != nil {
		t.Error("the record still has the body it handed over")
	}
	if again, b2 := r.TakeRequestBody(); b2 != nil || again != nil {
		t.Error("a body was taken twice")
	}
	Release(r)
	if cap(r.RequestBody) > 0 && &r.RequestBody[:1][0] == &orig[0] {
		t.Fatal("the pool kept a taken body")
	}
	GiveBodyBuffer(buf)
	if s := spareBodyBuffer(); cap(s) != cap(orig) || len(s) != 0 {
		t.Errorf("spare after give back: cap %d, want %d", cap(s), cap(orig))
	}

	// Not taken: small, meta only, mostly past the capture limit, owner no
	// longer holding it, no swapper.
	type borrowed struct {
		size, limit int
		capture     bool
		moveOn      bool // the owner moved on to another body after the borrow
		notLast     bool // a reader follows the one that tries to take
	}
	for name, c := range map[string]borrowed{
		"small":                         {TakeMin - 1, 1 << 20, true, false, false},
		"meta":                          {2 * TakeMin, 1 << 20, false, false, false},
		"mostly past the capture limit": {5 * TakeMin, 2 * TakeMin, true, false, false},
		"reset":                         {2 * TakeMin, 1 << 20, true, true, false},
		"not the last reader":           {2 * TakeMin, 1 << 20, true, false, true},
	} {
		o := &swapOwner{b: make([]byte, c.size)}
		r := Acquire(c.limit)
		r.Capture = c.capture
		r.BorrowRequestBody(o.b, o)
		if !c.notLast {
			r.LastReader()
		}
		if c.moveOn {
			o.b = make([]byte, c.size)
		}
		before := o.b
		if body, buf := r.TakeRequestBody(); buf != nil || body != nil {
			t.Errorf("%s: body taken", name)
		}
		if len(before) > 0 && &o.b[0] != &before[0] {
			t.Errorf("%s: owner's buffer swapped", name)
		}
		Release(r)
	}
	r = Acquire(1 << 20)
	r.Capture = true
	r.BorrowRequestBody(make([]byte, 2*TakeMin), &owned{b: nil})
	r.LastReader()
	if _, buf := r.TakeRequestBody(); buf != nil {
		t.Error("taken from an owner that cannot swap")
	}
	Release(r)
}

// TestBodyBuffersBounded: the buffers given back are kept up to
// bodyBuffersMax bytes; tiny ones are not kept at all.
func TestBodyBuffersBounded(t *testing.T) {
	for spareBodyBuffer() != nil {
	}
	GiveBodyBuffer(make([]byte, 10))
	if spareBodyBuffer() != nil {
		t.Error("a buffer under TakeMin was kept")
	}
	each := bodyBuffersMax / 4
	for range 6 {
		GiveBodyBuffer(make([]byte, each))
	}
	n := 0
	for spareBodyBuffer() != nil {
		n++
	}
	if n != 4 {
		t.Errorf("%d buffers of %d bytes kept; want 4 (bound %d)", n, each, bodyBuffersMax)
	}
}

// TestKeepBorrowedBody: a record that outlives its request keeps its
// borrowed body: a large one by taking the owner's buffer (the owner gets
// one given back earlier; the storage can still take it by reference and
// the record pool never keeps it), a small one by a copy into the record's
// own buffer; a body its owner no longer has is dropped.
func TestKeepBorrowedBody(t *testing.T) {
	given := make([]byte, 0, 3*TakeMin)
	GiveBodyBuffer(given)
	body := bytes.Repeat([]byte("0123456789abcdef"), TakeMin/8)
	o := &swapOwner{b: append(make([]byte, 0, len(body)), body...)}
	orig := o.b
	r := Acquire(1 << 20)
	r.Capture = true
	r.BorrowRequestBody(o.b, o)
	r.KeepBorrowedBody()
	if cap(o.b) != cap(given) || len(o.b) != 0 {
		t.Fatalf("owner's buffer after the keep: len %d cap %d; want the one given back", len(o.b), cap(o.b))
	}
	o.b = append(o.b, "the next request"...)
	if !bytes.Equal(r.RequestBody, body) || &r.RequestBody[0] != &orig[0] || !r.BorrowedBodyValid() {
		t.Fatal("the kept large body is not the owner's old buffer, whole")
	}
	r.LastReader()
	got, buf := r.TakeRequestBody()
	if &buf[0] != &orig[0] || !bytes.Equal(got, body) {
		t.Fatal("the storage did not get the kept body by reference")
	}
	Release(r)
	GiveBodyBuffer(buf)
	_ = spareBodyBuffer()

	small := []byte(`{"model":"m"}`)
	o = &swapOwner{b: append([]byte(nil), small...)}
	r = Acquire(1 << 20)
	r.Capture = true
	r.BorrowRequestBody(o.b, o)
	r.KeepBorrowedBody()
	copy(o.b, "XXXXXXXXXXXXX") // the owner reuses its buffer
	if string(r.RequestBody) != string(small) {
		t.Fatalf("kept small body = %q, want %q", r.RequestBody, small)
	}
	Release(r)

	o = &swapOwner{b: append([]byte(nil), small...)}
	r = Acquire(1 << 20)
	r.Capture = true
	r.BorrowRequestBody(o.b, o)
	o.b = []byte("another body, another buffer")
	r.KeepBorrowedBody()
	if len(r.RequestBody) != 0 {
		t.Fatalf("a body the owner no longer has was kept: %q", r.RequestBody)
	}
	Release(r)
}
