package chlog

import (
	"context"
	"errors"
	"fmt"
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
		return w.spoolEncoded(m, buf.Buf, false)
	}
	if w.down.Load() {
		// The replayer is draining the spool; joining its queue keeps the
		// order and saves a doomed insert.
		err := w.spoolEncoded(m, buf.Buf, false)
		w.kickReplayer()
		return err
	}
	g := &gather{w: w, m: m, buf: buf, size: len(buf.Buf), limit: w.coalesceLimit()}
	defer func() { w.budget.release(g.held) }()
	unknown, err := w.deliverGathering(ctx, m, buf.Buf, false, w.o.Retries, g)
	m = g.m
	if err == nil {
		w.releaseWAL(m.seq)
		for _, seq := range g.seqs {
			w.releaseWAL(seq)
		}
		return nil
	}
	w.down.Store(true)
	w.tableGone(err)
	unknown = unknown || maybeStored(err)
	if len(g.seqs) == 0 {
		err = errors.Join(err, w.spoolEncoded(m, buf.Buf, unknown))
	} else {
		err = errors.Join(err, w.putSpool(m, buf.Buf, unknown, append([]uint64{m.seq}, g.seqs...)))
	}
	w.kickReplayer()
	return err
}

// gather adds the blocks that wait for the sender (or the spooler) to the
// insert in flight, behind the block it began with, up to limit encoded
// bytes: the insert's body (zbody) asks for them as it runs out, so that
// a burst (Write cutting blocks faster than one insert a block goes) goes
// as one streamed insert. Each insert makes a part on the server, and at
// 2000-row blocks of ~6.5 KiB rows the part per insert, not the bytes, is
// what costs the server most (bench/chinsert on 18.16: ten such blocks as
// one insert took ~20 us of server CPU a row, as ten inserts 36-54 us).
// Blocks that come while nothing is being sent still go one by one.
//
// Each added block is encoded into a buffer of its own (a segment), so
// that none is copied to join the others: growing one buffer for the
// whole insert copied every block gathered so far again at each doubling,
// into fresh memory (half the writer's CPU in bench/chinsert). Only an
// insert that failed is joined into buf, for its retries or the spool.
//
// next runs on the HTTP transport's goroutine while the sender waits in
// deliver; the sender reads m, seqs, segs and held only after the body
// ended.
type gather struct {
	w     *Writer
	m     blockMeta     // the insert's blocks so far
	buf   *proto.Buffer // the first block's encoding
	segs  [][]byte      // the added blocks' encodings, in order
	size  int           // encoded bytes of the insert so far
	limit int
	seqs  []uint64 // the added blocks' sequence numbers: their WAL segments go with the insert
	held  int64    // budget bytes the added blocks hold until the insert is done
	ended bool     // the first attempt is over: the insert's blocks are fixed
}

// next encodes the next waiting block into a segment and returns it, or
// nil when no block waits or the insert is full.
func (g *gather) next() []byte {
	w := g.w
	for !g.ended && g.size < g.limit {
		b := w.sendq.pop()
		if b == nil {
			select {
			case b = <-w.spoolq:
			default:
				return nil
			}
		}
		w.budget.move(0, int64(b.bytes)) // the encoded copy, as sendBlock
		g.held += int64(b.held + b.bytes)
		seg := proto.Buffer{Buf: w.segments.take(b.bytes)}
		err := b.encode(&seg) // sorts the rows: last after it
		rows, seq, last := b.rows, b.seq, b.last
		w.recycle(b)
		if err != nil {
			w.segments.give(seg.Buf)
			w.stats.rowsDropped.Add(int64(rows))
			w.log.Error("chlog: BUG: encode block", "rows", rows, "err", err)
			_ = w.lose(fmt.Errorf("chlog: %d rows dropped: encode: %w", rows, err))
			continue
		}
		g.segs = append(g.segs, seg.Buf)
		g.size += len(seg.Buf)
		g.seqs = append(g.seqs, seq)
		g.m.rows += rows
		g.m.last = last
		return seg.Buf
	}
	return nil
}

// join appends the segments to buf, whole: the insert as one encoding,
// for its retries and the spool. The segments go back for reuse.
func (g *gather) join() {
	if len(g.segs) == 0 {
		return
	}
	reserveBuffer(g.buf, g.size-len(g.buf.Buf))
	for _, s := range g.segs {
		g.buf.Buf = append(g.buf.Buf, s...)
	}
	g.release()
}

// release gives the segments back for reuse.
func (g *gather) release() {
	for i, s := range g.segs {
		g.w.segments.give(s)
		g.segs[i] = nil
	}
	g.segs = g.segs[:0]
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
	return w.deliverGathering(ctx, m, native, unknown, retries, nil)
}

// gathering is what the first attempt of an insert takes in behind its
// first block while it runs: the blocks waiting for the sender (gather) or
// the spool files behind the one being replayed (spoolGather).
type gathering interface {
	// next returns the next encoded block for the insert's body, or nil
	// when there is none (or no room): the body then ends.
	next() []byte
	// end is called once, when the first attempt is over (ok: inserted),
	// and returns the insert as it now stands, for the retries.
	end(ok bool) (blockMeta, []byte)
}

// end fixes the insert's blocks: on success the segments go back for
// reuse, else they are joined into buf for the retries and the spool.
func (g *gather) end(ok bool) (blockMeta, []byte) {
	g.ended = true
	if ok {
		g.release()
	} else {
		g.join()
	}
	return g.m, g.buf.Buf
}

// deliverGathering is deliver whose first attempt (when g is set) takes in
// what g gives meanwhile; native and m then grow to cover it for the
// retries.
func (w *Writer) deliverGathering(ctx context.Context, m blockMeta, native []byte, unknown bool, retries int, g gathering) (stillUnknown bool, err error) {
	w.insertMu.Lock()
	defer w.insertMu.Unlock()
	start := time.Now()
	defer func() {
		if w.o.OnInsert != nil {
			w.o.OnInsert(time.Since(start), m.rows, err)
		}
	}()
	body, token := native, queryID(m)
	tried := m.tried // m is the gathered files' own after an insert of them
	// partly: a presence check found some of the block's rows stored. The
	// retries send only the rest, but the caller spools the whole block:
	// it must go there flagged unknown, to be checked again, not re-sent.
	partly := false
	for attempt := 0; ; attempt++ {
		if unknown {
			r, cerr := w.missingRows(ctx, m, native)
			if cerr != nil {
				// Nothing is known about the block yet: the check is an
				// attempt like an insert, retried within the same budget
				// (the caller logs the last one).
				if attempt >= retries || ctx.Err() != nil {
					return true, cerr
				}
				w.log.Warn("chlog: presence check failed; will check again", "seq", m.seq, "rows", m.rows, "attempt", tried+attempt+1, "err", cerr)
				select {
				case <-time.After(backoff(attempt)):
					continue
				case <-ctx.Done():
					return true, cerr
				}
			}
			if r.native == nil {
				w.stats.rowsWritten.Add(int64(m.rows))
				w.log.Info("chlog: block already in ClickHouse; not re-sent", "seq", m.seq, "rows", r.total)
				return false, nil
			}
			if r.rows < r.total {
				partly = true
				w.log.Info("chlog: block partly in ClickHouse; re-sending only the missing rows", "seq", m.seq, "rows", r.total, "missing", r.rows)
			}
			body, token = r.native, r.token
			unknown = false
		}
		ictx, cancel := context.WithTimeout(ctx, w.o.InsertTimeout)
		if g != nil {
			err = w.ch.insertMore(ictx, body, g.next, queryID(m), token)
			m, native = g.end(err == nil)
			body, g = native, nil
		} else {
			err = w.ch.insert(ictx, body, queryID(m), token)
		}
		cancel()
		if err == nil {
			w.stats.rowsWritten.Add(int64(m.rows))
			return false, nil
		}
		unknown = errors.Is(err, errUnknownOutcome)
		w.stats.insertErrors.Add(1)
		w.log.Warn("chlog: insert failed", "seq", m.seq, "rows", m.rows, "attempt", tried+attempt+1, "outcome_unknown", unknown, "node", failedNode(err), "err", err)
		// Noted at each failed attempt: a retry the Distributed table
		// routes to another replica succeeds, and the node without the
		// table was never made whole (tableGone).
		w.tableGone(err)
		// A partly stored block stays unknown unless the server refused
		// the rest for good (its bytes, or the table): the caller then
		// sets it aside or blocks on it by that error, as any refusal.
		partlyOpen := partly && classify(err) == failTransient
		if attempt >= retries || ctx.Err() != nil {
			return unknown || partlyOpen, err
		}
		unknown = unknown || maybeStored(err) // settled before the re-send
		select {
		case <-time.After(backoff(attempt)):
		case <-ctx.Done():
			return unknown || partlyOpen, err
		}
	}
}

// maybeStored reports whether err is an exception ClickHouse answered to an
// insert that may have stored the rows all the same: the server can fail
// after it committed the table's part (a materialized view on the table
// that throws while the block is pushed to it: 18.16 answers its error and
// keeps the rows). The server saying the bytes are broken (the reject
// class) and the exceptions a query gets before it runs (beforeRun: who
// may run it, and whether it may run now) come before anything is written.
// A block that failed so is checked (present.go) before it is sent again,
// like one whose outcome is unknown; the error's class still decides what
// the replayer does with it.
func maybeStored(err error) bool {
	e, answered := AsException(err)
	return answered && !errors.Is(err, errUnknownOutcome) && !beforeRun[e.Code] && classify(err) != failReject
}

// beforeRun are the exception codes a query gets before it runs, so
// before an insert writes anything: the user, the password, the address
// or the grants refused (192-195, 497, 516), a readonly user (164), a
// quota (201), too many queries at once (202), and a database that does
// not exist (81).
var beforeRun = codeSet(81, 164, 192, 193, 194, 195, 201, 202, 497, 516)

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
