package chlog

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ClickHouse/ch-go/proto"
)

// nativeBlock encodes one raw Native block by hand: cols is name, type and
// the column's values already encoded.
func nativeBlock(rows int, cols ...[3]string) []byte {
	var b proto.Buffer
	b.PutUVarInt(uint64(len(cols)))
	b.PutUVarInt(uint64(rows))
	for _, c := range cols {
		b.PutString(c[0])
		b.PutString(c[1])
		b.Buf = append(b.Buf, c[2]...)
	}
	return b.Buf
}

// strValues encodes String values.
func strValues(vs ...string) string {
	var b proto.Buffer
	for _, v := range vs {
		b.PutString(v)
	}
	return string(b.Buf)
}

func TestVerifySpoolChecksSchemaTypes(t *testing.T) {
	ids := strValues("id-a", "id-b")
	f := spoolFile{rows: 2, first: "ida", last: "idb"}
	good := nativeBlock(2, [3]string{"request_id", "String", ids}, [3]string{"status", "UInt16", "\x01\x00\x02\x00"})
	if _, _, err := verifySpool(good, f); err != nil {
		t.Fatalf("a valid block: %v", err)
	}
	// A column the schema knows, of another type: refused before sending,
	// as the decoder did.
	bad := nativeBlock(2, [3]string{"request_id", "String", ids}, [3]string{"status", "String", strValues("1", "2")})
	if _, _, err := verifySpool(bad, f); err == nil || !strings.Contains(err.Error(), "column status: type String, schema has UInt16") {
		t.Errorf("status as String: %v; want the column and both types named", err)
	}
	// A column the schema does not know is only walked.
	extra := nativeBlock(2, [3]string{"request_id", "String", ids}, [3]string{"note", "String", strValues("x", "y")})
	if _, _, err := verifySpool(extra, f); err != nil {
		t.Errorf("an unknown column: %v; want valid", err)
	}
	// No request_id: the ids are "" (as decodeBlock fills them).
	noID := nativeBlock(2, [3]string{"status", "UInt16", "\x01\x00\x02\x00"})
	if _, _, err := verifySpool(noID, spoolFile{rows: 2}); err != nil {
		t.Errorf("no request_id column: %v; want valid with empty ids", err)
	}
	if _, _, err := verifySpool(noID, f); err == nil || !strings.Contains(err.Error(), "first and last request_id") {
		t.Errorf("no request_id column against a name with ids: %v", err)
	}
}

// TestCountRowsCopiesNothing: checking a spool file of large bodies before
// its replay allocates nothing per row or byte (it once decoded every
// column, 16 MiB of bodies copied for a count).
func TestCountRowsCopiesNothing(t *testing.T) {
	body := string(bytes.Repeat([]byte("b"), 1<<20))
	var data []byte
	for blk := range 3 {
		ids := []string{}
		bodies := []string{}
		for i := range 4 {
			ids = append(ids, "req-"+string(rune('a'+blk))+string(rune('0'+i)))
			bodies = append(bodies, body)
		}
		data = append(data, nativeBlock(4,
			[3]string{"request_id", "String", strValues(ids...)},
			[3]string{"request_body", "String", strValues(bodies...)},
			[3]string{"response_chunks", "Array(String)", "\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00" + strValues("c", "d")},
		)...)
	}
	rows, first, last, err := countRows(data)
	if err != nil || rows != 12 || first != "req-a0" || last != "req-c3" {
		t.Fatalf("countRows = %d, %q, %q, %v; want 12 rows from req-a0 to req-c3", rows, first, last, err)
	}
	allocs := testing.AllocsPerRun(5, func() {
		if _, _, _, err := countRows(data); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 { // the two ids returned as strings
		t.Errorf("%.0f allocations to count the rows of %d bytes; want at most 2", allocs, len(data))
	}
}
