package chlog

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/ClickHouse/ch-go/proto"
)

// send encodes b and inserts it, retrying with backoff; what cannot be
// inserted is spooled. It returns the insert error (nil once inserted).
func (w *Writer) send(ctx context.Context, b *block, buf *proto.Buffer) error {
	m, err := w.encode(b, buf)
	if err != nil {
		return err
	}
	if w.ch == nil {
		w.spoolEncoded(m, buf.Buf, false)
		return nil
	}
	if w.down.Load() {
		// The replayer is draining the spool; joining its queue keeps the
		// order and saves a doomed insert.
		w.spoolEncoded(m, buf.Buf, false)
		w.kickReplayer()
		return nil
	}
	c := w.coalesce(&m, buf)
	defer w.budget.release(c.held)
	unknown, err := w.deliver(ctx, m, buf.Buf, false, w.o.Retries)
	if err == nil {
		w.releaseWAL(m.seq)
		for _, seq := range c.seqs {
			w.releaseWAL(seq)
		}
		return nil
	}
	w.down.Store(true)
	if len(c.seqs) == 0 {
		w.spoolEncoded(m, buf.Buf, unknown)
	} else {
		w.putSpool(m, buf.Buf, unknown, append([]uint64{m.seq}, c.seqs...))
	}
	w.kickReplayer()
	return err
}

// coalesced is what coalesce added to an insert: the blocks' sequence
// numbers and the budget bytes they hold until the insert is done.
type coalesced struct {
	seqs []uint64
	held int64
}

// coalesce appends the blocks already waiting for the sender or the
// spooler (a burst: Write cut them faster than one insert a block goes)
// to the encoded block in buf, so that they go as one insert, up to
// coalesceLimit bytes; m then describes them all. Each insert makes a part
// on the server, and at 2000-row blocks of ~6.5 KiB rows the part per
// insert, not the bytes, is what costs the server most (bench/chinsert on
// 18.16: ten such blocks as one insert took ~20 us of server CPU a row, as
// ten inserts 36-54 us, at 1.1-1.9x the rows/s). Blocks that come while
// nothing waits still go one by one.
func (w *Writer) coalesce(m *blockMeta, buf *proto.Buffer) coalesced {
	var c coalesced
	limit := w.coalesceLimit()
	for len(buf.Buf) < limit {
		var b *block
		select {
		case b = <-w.sendq:
		case b = <-w.spoolq:
		default:
			return c
		}
		n := int64(b.held + b.bytes)
		w.budget.move(0, int64(b.bytes)) // the encoded copy, as sendBlock
		c.held += n
		if len(c.seqs) == 0 {
			// Room for the blocks waiting now (each about this one's
			// size) in one allocation, within the limit.
			waiting := 1 + len(w.sendq) + len(w.spoolq)
			reserveBuffer(buf, min(waiting*b.bytes, max(limit-len(buf.Buf), 0)+b.bytes))
		}
		growEncoded(buf, b.bytes)
		mark := len(buf.Buf)
		rows, seq, last := b.rows, b.seq, b.last
		err := b.encode(buf)
		w.recycle(b)
		if err != nil {
			buf.Buf = buf.Buf[:mark]
			w.stats.rowsDropped.Add(int64(rows))
			w.log.Error("chlog: BUG: encode block", "rows", rows, "err", err)
			continue
		}
		c.seqs = append(c.seqs, seq) // its WAL segment goes with the insert
		m.rows += rows
		m.last = last
	}
	return c
}

// growEncoded makes room for n more bytes in buf, at least doubling it:
// reserveBuffer's growth by what one block needs would copy the gathered
// blocks again for each block added.
func growEncoded(buf *proto.Buffer, n int) {
	if len(buf.Buf)+n <= cap(buf.Buf) {
		return
	}
	reserveBuffer(buf, max(n, cap(buf.Buf)))
}

// coalesceLimit is the most encoded bytes one insert gathers: four
// batches, at most an eighth of the memory budget (the encoded copy is
// charged to it), never less than one batch.
func (w *Writer) coalesceLimit() int {
	if benchNoCoalesce.Load() {
		return 0
	}
	return max(w.o.BatchBytes, min(4*w.o.BatchBytes, int(w.o.MaxBufferBytes/8)))
}

// deliver inserts one encoded block (native: one or several concatenated
// raw Native blocks) holding the insert slot. unknown says an earlier
// attempt may have been applied, in whole or in part: before a re-send the
// relay then settles what is stored (missingRows, present.go) and sends only
// the rest. An insert whose own outcome is unknown (errUnknownOutcome) is
// settled the same way before its retry. It returns whether the outcome is
// still unknown when it gives up.
func (w *Writer) deliver(ctx context.Context, m blockMeta, native []byte, unknown bool, retries int) (stillUnknown bool, err error) {
	w.insertMu.Lock()
	defer w.insertMu.Unlock()
	start := time.Now()
	defer func() {
		if w.o.OnInsert != nil {
			w.o.OnInsert(time.Since(start), m.rows, err)
		}
	}()
	body, token := native, queryID(m)
	for attempt := 0; ; attempt++ {
		if unknown {
			r, cerr := w.missingRows(ctx, m, native)
			if cerr != nil {
				return true, cerr
			}
			if r.native == nil {
				w.stats.rowsWritten.Add(int64(m.rows))
				w.log.Info("chlog: block already in ClickHouse; not re-sent", "seq", m.seq, "rows", r.total)
				return false, nil
			}
			if r.rows < r.total {
				w.log.Info("chlog: block partly in ClickHouse; re-sending only the missing rows", "seq", m.seq, "rows", r.total, "missing", r.rows)
			}
			body, token = r.native, r.token
			unknown = false
		}
		ictx, cancel := context.WithTimeout(ctx, w.o.InsertTimeout)
		err = w.ch.insert(ictx, body, queryID(m), token)
		cancel()
		if err == nil {
			w.stats.rowsWritten.Add(int64(m.rows))
			return false, nil
		}
		unknown = errors.Is(err, errUnknownOutcome)
		w.stats.insertErrors.Add(1)
		w.log.Warn("chlog: insert failed", "seq", m.seq, "rows", m.rows, "attempt", attempt+1, "outcome_unknown", unknown, "node", failedNode(err), "err", err)
		if attempt >= retries || ctx.Err() != nil {
			return unknown, err
		}
		select {
		case <-time.After(backoff(attempt)):
		case <-ctx.Done():
			return unknown, err
		}
	}
}

// queryID names every insert attempt of a block alike: the block's sequence
// number and its first request id (random), so blocks of different relay
// instances never share one. It is also the block's
// insert_deduplication_token where the server has that setting.
func queryID(m blockMeta) string {
	return "stream-relay-" + strconv.FormatUint(m.seq, 10) + "-" + quoteID(m.first[:])
}

// backoff returns the wait before retry attempt+1: 200ms doubling, at most 30s.
func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt, 8)
	return min(d, 30*time.Second)
}
