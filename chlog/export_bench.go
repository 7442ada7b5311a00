package chlog

import (
	"sync/atomic"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/record"
)

// EncodeBlocks returns the Native blocks a Writer would insert for recs,
// cut every blockRows rows (DefaultBatchRows when <= 0): the exact bytes of
// each INSERT ... FORMAT Native body before compression, one slice per
// block. Measurement programs (bench/chinsert) send the same bytes by other
// clients to tell the writer's overhead from the server's own limit.
func EncodeBlocks(recs []*record.Record, blockRows int) ([][]byte, error) {
	if blockRows <= 0 {
		blockRows = DefaultBatchRows
	}
	var out [][]byte
	b := newBlock()
	for start := 0; start < len(recs); start += blockRows {
		b.reset()
		for _, r := range recs[start:min(start+blockRows, len(recs))] {
			b.add(r)
		}
		var buf proto.Buffer
		reserveBuffer(&buf, b.bytes)
		if err := b.encode(&buf); err != nil {
			return nil, err
		}
		out = append(out, buf.Buf)
	}
	return out, nil
}

// benchNoCoalesce turns off coalesce (send.go) for the whole process.
var benchNoCoalesce atomic.Bool

// SetCoalescing turns on (the default) or off the sender's gathering of
// waiting blocks into one insert, in every Writer of the process. Only for
// measurement programs that compare both in one run (bench/chinsert).
func SetCoalescing(on bool) { benchNoCoalesce.Store(!on) }
