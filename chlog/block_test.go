package chlog

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// TestBlockGolden pins the Native encoding of one block of the representative
// records (fixed ids and times). Run with -update after a deliberate change.
func TestBlockGolden(t *testing.T) {
	b := newBlock()
	for i, r := range roundTripRecords() {
		copy(r.ID[:], bytes.Repeat([]byte{"0123456789abcdef"[i]}, len(r.ID)))
		r.Start = time.Unix(1_750_000_000+int64(i), 0)
		b.add(r)
	}
	var buf proto.Buffer
	if err := b.encode(&buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "block.native")
	if *update {
		if err := os.WriteFile(path, buf.Buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestBlockGolden -update)", err)
	}
	if !bytes.Equal(buf.Buf, want) {
		t.Fatalf("encoded block differs from %s (%d vs %d bytes); run with -update if intended", path, len(buf.Buf), len(want))
	}
	// Reset keeps capacity and empties every column.
	b.reset()
	for _, c := range b.input {
		if c.Data.Rows() != 0 {
			t.Fatalf("column %s has %d rows after reset", c.Name, c.Data.Rows())
		}
	}
}
