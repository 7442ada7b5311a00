package chlog

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/record"
)

// swapOwner is a heldBody that gives its buffer away as
// *fasthttp.Request.SwapBody does.
type swapOwner struct{ heldBody }

func (o *swapOwner) SwapBody(b []byte) []byte {
	old := o.b
	o.b = b
	return old
}

// bodyRows are records of every body shape, in routes out of key order:
// large bodies (taken by reference when borrowed), small ones (always
// copied), meta capture (no body stored).
// borrow says whether the large bodies come borrowed from a swapper
// (returned, one per record, nil where not borrowed) or copied.
func bodyRows(borrow bool) ([]*record.Record, []*swapOwner) {
	t0 := time.Unix(1_750_000_000, 0)
	routes := []string{"openai", "anthropic", "tts", "openai", "gemini", "anthropic", "openai", "tts"}
	var recs []*record.Record
	var owners []*swapOwner
	for i, route := range routes {
		r := distinctRecord(i, route, t0.Add(time.Duration(len(routes)-i)*time.Second))
		copy(r.ID[:], fmt.Sprintf("%032x", 1000+i)) // the same in both sets
		var body []byte
		switch i % 4 {
		case 0, 1: // large
			body = bytes.Repeat(fmt.Appendf(nil, "row %d of a large body; ", i), (record.TakeMin+3000*i)/20)
		case 2: // small
			body = fmt.Appendf(nil, `{"small":%d}`, i)
		case 3:
			r.Capture = false
		}
		var o *swapOwner
		if body != nil {
			if borrow && len(body) >= record.TakeMin {
				o = &swapOwner{heldBody{b: body}}
				r.BorrowRequestBody(o.b, o)
				r.LastReader() // as the relay's last sink reads it
			} else {
				r.SetRequestBody(body)
			}
		}
		recs = append(recs, r)
		owners = append(owners, o)
	}
	return recs, owners
}

// TestBodyColEncodesAsColStr: a block whose large request bodies are
// held by reference encodes to the same bytes as one that copied every
// body, rows sorted into key order with their bodies; the WAL's last-row
// encoding of a row taken by reference is that of the row copied. The
// owners got other buffers (the bodies were taken, not copied), and the
// block gives the taken buffers back once done with.
func TestBodyColEncodesAsColStr(t *testing.T) {
	copied, _ := bodyRows(false)
	taken, owners := bodyRows(true)
	want, got := newBlock(), newBlock()
	var l lastRows
	spare, takes := 0, 0
	for i := range copied {
		want.add(copied[i])
		o := owners[i]
		if o != nil {
			spare += cap(o.b) - len(taken[i].RequestBody)
		}
		got.add(taken[i])
		if o != nil {
			takes++
			if len(o.b) != 0 || taken[i].RequestBody != nil {
				t.Fatalf("row %d: the owner still holds its %d-byte body, the record %d bytes: not taken", i, len(o.b), len(taken[i].RequestBody))
			}
		}
		var last, one proto.Buffer
		if err := l.encode(got, &last); err != nil {
			t.Fatal(err)
		}
		single := newBlock()
		single.add(copied[i])
		if err := single.encode(&one); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(last.Buf, one.Buf) {
			t.Errorf("row %d: WAL last-row encoding differs from the row copied", i)
		}
	}
	if takes == 0 || len(got.reqBody.taken) != takes || len(want.reqBody.taken) != 0 {
		t.Fatalf("%d bodies borrowed, %d taken by the block, %d by the copying one", takes, len(got.reqBody.taken), len(want.reqBody.taken))
	}
	if got.reqBody.spare != spare || blockMem(got)-got.bytes < spare {
		t.Errorf("spare %d, blockMem beyond rows %d; want %d counted", got.reqBody.spare, blockMem(got)-got.bytes, spare)
	}
	if got.bytes != want.bytes {
		t.Errorf("block bytes %d, want %d as copied", got.bytes, want.bytes)
	}
	wantNative, gotNative := encodeRecords(t, want), encodeRecords(t, got)
	if !bytes.Equal(gotNative, wantNative) {
		t.Fatalf("block with bodies by reference encodes differently (%d vs %d bytes)", len(gotNative), len(wantNative))
	}
	rows, err := DecodeRows(gotNative)
	if err != nil || len(rows) != len(copied) {
		t.Fatalf("decoded %d rows, %v", len(rows), err)
	}
	byID := map[string]Row{}
	for _, row := range rows {
		byID[row.RequestID] = row
	}
	for i, r := range copied {
		if row := byID[r.IDString()]; r.Capture && !bytes.Equal(row.RequestBody, r.RequestBody) {
			t.Errorf("row %d: body of %d bytes, want %d", i, len(row.RequestBody), len(r.RequestBody))
		}
	}

	// Done with (recycled): the taken buffers are given back, and the next
	// take gives one of them to its owner.
	bufs := map[*byte]bool{}
	for _, b := range got.reqBody.taken {
		bufs[&b[:1][0]] = true
	}
	w := &Writer{keep: 64 << 20}
	w.cur = newBlock()
	w.recycle(got)
	if len(got.reqBody.taken) != 0 || len(got.reqBody.refs) != 0 || got.reqBody.spare != 0 {
		t.Fatalf("recycled block still holds %d taken buffers", len(got.reqBody.taken))
	}
	o := &swapOwner{heldBody{b: bytes.Repeat([]byte("x"), 2*record.TakeMin)}}
	r := sseRecord(99, 1)
	r.BorrowRequestBody(o.b, o)
	r.LastReader() // as the relay's last sink reads it
	if _, buf := r.TakeRequestBody(); buf == nil || o.b == nil || !bufs[&o.b[:1][0]] {
		t.Error("the next take did not give its owner a buffer the block gave back")
	}
	for _, r := range append(copied, append(taken, r)...) {
		record.Release(r)
	}
}
