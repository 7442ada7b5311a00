package record

import (
	"testing"
	"time"
)

// TestAddMessage: messages are stored behind their direction and type,
// their payload counted in BytesIn or BytesOut, and capture stops at the
// limit with the prefix counted.
func TestAddMessage(t *testing.T) {
	r := Acquire(12)
	defer Release(r)
	r.Capture, r.Kind = true, KindWS
	r.AddMessage(DirClient, MsgText, []byte("hi"), time.Millisecond)
	r.AddMessage(DirUpstream, MsgBinary, []byte{0, 1, 2}, 3*time.Millisecond)
	r.AddMessage(DirUpstream, MsgText, []byte("too long"), 4*time.Millisecond)
	if r.Chunks.Len() != 2 || string(r.Chunks.Chunk(0)) != ">thi" || string(r.Chunks.Chunk(1)) != "<b\x00\x01\x02" {
		t.Fatalf("chunks %q %q", r.Chunks.Chunk(0), r.Chunks.Chunk(1))
	}
	if r.BytesIn != 2 || r.BytesOut != 11 || r.ChunkCount != 3 || !r.Truncated || r.Chunks.AtMS[1] != 3 {
		t.Fatalf("in %d out %d count %d truncated %v times %v", r.BytesIn, r.BytesOut, r.ChunkCount, r.Truncated, r.Chunks.AtMS)
	}
}
