package chlog

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ClickHouse/ch-go/proto"
)

func encodeRecords(t testing.TB, b *block) []byte {
	t.Helper()
	var buf proto.Buffer
	if err := b.encode(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Buf
}

// TestDecodeRoundTrip: a block decoded into rows and rebuilt from them
// encodes to the same bytes, so a re-send of some rows is lossless.
func TestDecodeRoundTrip(t *testing.T) {
	b := newBlock()
	recs := roundTripRecords()
	for _, r := range recs {
		b.add(r)
	}
	native := encodeRecords(t, b)
	rows, err := DecodeRows(append(append([]byte(nil), native...), native...))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2*len(recs) {
		t.Fatalf("decoded %d rows, want %d", len(rows), 2*len(recs))
	}
	// The block holds its rows in key order (order.go), not as added.
	byID := map[string]Row{}
	for _, r := range rows[:len(recs)] {
		byID[r.RequestID] = r
	}
	for i, r := range recs {
		if _, ok := byID[string(r.ID[:])]; !ok {
			t.Fatalf("record %d (%s) not among the decoded rows", i, r.ID[:])
		}
	}
	if tr := byID[string(recs[3].ID[:])]; tr.TruncatedReason != "max_capture_bytes" || !tr.Truncated {
		t.Fatalf("truncated row: %+v", tr)
	}
	if e, s := byID[string(recs[2].ID[:])], byID[string(recs[0].ID[:])]; e.TTFBms != nil || s.TTFBms == nil {
		t.Fatalf("nullable ttfb: error row %v, sse row %v", e.TTFBms, s.TTFBms)
	}
	again := newBlock()
	for i := range len(recs) {
		again.add(rows[i].Record())
	}
	if got := encodeRecords(t, again); !bytes.Equal(got, native) {
		t.Fatalf("rebuilt block differs: %d vs %d bytes", len(got), len(native))
	}
}

// TestDecodeOlderFile: a block written before truncated_reason existed
// decodes, the missing column empty.
func TestDecodeOlderFile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "block_v1.native"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := DecodeRows(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 {
		t.Fatalf("%d rows, want 4", len(rows))
	}
	for _, r := range rows {
		if r.TruncatedReason != "" {
			t.Fatalf("row %s: truncated_reason %q from a file without the column", r.RequestID, r.TruncatedReason)
		}
	}
	if rows[0].Route != "openai" || len(rows[0].Chunks) != 3 {
		t.Fatalf("row 0: route %q, %d chunks", rows[0].Route, len(rows[0].Chunks))
	}
}

// TestDecodeBroken: torn, empty-header and foreign-typed blocks are errors
// that say what is wrong.
func TestDecodeBroken(t *testing.T) {
	b := newBlock()
	for _, r := range roundTripRecords() {
		b.add(r)
	}
	native := encodeRecords(t, b)
	for _, cut := range []int{1, 10, len(native) / 2, len(native) - 1} {
		if _, err := DecodeRows(native[:cut]); err == nil {
			t.Fatalf("block cut at %d of %d bytes decoded without error", cut, len(native))
		}
	}
	if _, err := DecodeRows([]byte("random bytes, not a block at all")); err == nil {
		t.Fatal("random bytes decoded without error")
	}
	// A column of another type than the schema's.
	var buf proto.Buffer
	col := proto.ColUInt32{7}
	if err := (proto.Block{Columns: 1, Rows: 1}).EncodeRawBlock(&buf, protocolVersion, []proto.InputColumn{{Name: "route", Data: &col}}); err != nil {
		t.Fatal(err)
	}
	_, err := DecodeRows(buf.Buf)
	if err == nil || !strings.Contains(err.Error(), "route") || !strings.Contains(err.Error(), "UInt32") {
		t.Fatalf("foreign type: err = %v, want one naming route and UInt32", err)
	}
}
