package chlog

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/record"
)

// walRowRecords are rows of every shape: full capture with chunks and a
// body, meta only (times without bytes), no chunks at all, nulls (no first
// byte, no tokens), truncated, a WebSocket session.
func walRowRecords() []*record.Record {
	full := sseRecord(1, 5)
	full.SetRequestBody(bytes.Repeat([]byte("b"), 3000))
	meta := sseRecord(2, 0)
	meta.Capture = false
	meta.AddChunk([]byte("not kept"), time.Millisecond)
	meta.AddChunk([]byte("nor this"), 2*time.Millisecond)
	empty := sseRecord(3, 0)
	empty.TTFB, empty.TTFT, empty.TokensIn, empty.TokensOut = record.None, record.None, -1, -1
	empty.Status, empty.ErrorType = 502, record.ErrUpstreamConnect
	trunc := sseRecord(4, 3)
	trunc.Truncated, trunc.TruncatedReason = true, record.TruncStorageBudget
	ws := record.Acquire(1 << 20)
	ws.ID, ws.Start, ws.Kind, ws.Capture = newID(5), time.Now(), record.KindWS, true
	ws.AddMessage(record.DirClient, record.MsgText, []byte("hi"), time.Millisecond)
	ws.AddMessage(record.DirUpstream, record.MsgBinary, []byte{0, 1, 2}, 2*time.Millisecond)
	return []*record.Record{full, meta, empty, trunc, ws}
}

// TestWALLastRow: a WAL record encoded from the block's last row holds
// the same bytes as the row encoded alone as a one-row block (what
// recovery and replay decode), whatever rows came before it in the block.
func TestWALLastRow(t *testing.T) {
	recs := walRowRecords()
	var l lastRows
	for _, before := range [][]*record.Record{nil, recs[:1], recs[1:3], recs} {
		for i, r := range recs {
			blk := newBlock()
			for _, p := range before {
				blk.add(p)
			}
			blk.add(r)
			var got proto.Buffer
			if err := l.encode(blk, &got); err != nil {
				t.Fatal(err)
			}
			one := newBlock()
			one.add(r)
			var want proto.Buffer
			if err := one.encode(&want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Buf, want.Buf) {
				t.Fatalf("record %d after %d rows: last-row encoding differs from the one-row block (%d vs %d bytes)", i, len(before), len(got.Buf), len(want.Buf))
			}
			rows, err := DecodeRows(got.Buf)
			if err != nil || len(rows) != 1 || rows[0].RequestID != r.IDString() {
				t.Fatalf("record %d: decoded %d rows, err %v", i, len(rows), err)
			}
		}
	}
	// The WAL record around it: length, CRC, id, payload.
	blk := newBlock()
	blk.add(recs[0])
	rec, err := l.appendWALRecord([]byte("x"), blk, recs[0].ID[:])
	if err != nil {
		t.Fatal(err)
	}
	rec = rec[1:]
	payload := rec[walHeader:]
	if int(binary.LittleEndian.Uint32(rec)) != len(payload) || binary.LittleEndian.Uint32(rec[4:]) != crc32.ChecksumIEEE(payload) || string(rec[8:walHeader]) != recs[0].IDString() {
		t.Fatal("bad WAL record header")
	}
}

// BenchmarkWALRecord1MiB: the WAL record of a row with a 1 MiB request
// body, the old way (the row copied into a one-row block, encoded, the
// encoding copied into the WAL buffer) and from the block's last row.
func BenchmarkWALRecord1MiB(b *testing.B) {
	r := sseRecord(1, 20)
	r.SetRequestBody(bytes.Repeat([]byte("x"), 1<<20))
	blk := newBlock()
	blk.add(r)
	b.Run("one-row-block", func(b *testing.B) {
		row := newBlock()
		var enc proto.Buffer
		var buf []byte
		b.ReportAllocs()
		b.SetBytes(int64(len(r.RequestBody)))
		for b.Loop() {
			enc.Reset()
			row.add(r)
			if err := row.encode(&enc); err != nil {
				b.Fatal(err)
			}
			row.reset()
			var h [8]byte
			binary.LittleEndian.PutUint32(h[:], uint32(len(enc.Buf)))
			binary.LittleEndian.PutUint32(h[4:], crc32.ChecksumIEEE(enc.Buf))
			buf = append(buf[:0], h[:]...)
			buf = append(buf, r.ID[:]...)
			buf = append(buf, enc.Buf...)
		}
	})
	b.Run("last-row", func(b *testing.B) {
		var l lastRows
		var buf []byte
		b.ReportAllocs()
		b.SetBytes(int64(len(r.RequestBody)))
		for b.Loop() {
			var err error
			if buf, err = l.appendWALRecord(buf[:0], blk, r.ID[:]); err != nil {
				b.Fatal(err)
			}
		}
	})
}
