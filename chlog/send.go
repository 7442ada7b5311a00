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
	unknown, err := w.deliver(ctx, m, buf.Buf, false, w.o.Retries)
	if err == nil {
		w.releaseWAL(m.seq)
		return nil
	}
	w.down.Store(true)
	w.spoolEncoded(m, buf.Buf, unknown)
	w.kickReplayer()
	return err
}

// deliver inserts one encoded block holding the insert slot. unknown says an
// earlier attempt may have been applied: the relay then waits until the
// server no longer runs that attempt (every attempt of a block carries the
// same query_id, see queryID) and asks for the block's first and last
// request_id before a re-send (MergeTree, unlike Replicated tables, does not
// deduplicate blocks). It returns whether the outcome is still unknown when
// it gives up.
//
// A block is one part per partition, inserted atomically per partition, so
// "first and last present" means "all present" unless the block crossed
// midnight and only one day's part landed; that case is logged.
func (w *Writer) deliver(ctx context.Context, m blockMeta, native []byte, unknown bool, retries int) (stillUnknown bool, err error) {
	w.insertMu.Lock()
	defer w.insertMu.Unlock()
	start := time.Now()
	defer func() {
		if w.o.OnInsert != nil {
			w.o.OnInsert(time.Since(start), m.rows, err)
		}
	}()
	for attempt := 0; ; attempt++ {
		if unknown {
			present, cerr := w.present(ctx, m)
			if cerr != nil {
				return true, cerr
			}
			if present {
				w.stats.rowsWritten.Add(int64(m.rows))
				w.log.Info("chlog: block already in ClickHouse; not re-sent", "seq", m.seq, "rows", m.rows)
				return false, nil
			}
			unknown = false
		}
		ictx, cancel := context.WithTimeout(ctx, w.o.InsertTimeout)
		err = w.ch.insert(ictx, native, queryID(m))
		cancel()
		if err == nil {
			w.stats.rowsWritten.Add(int64(m.rows))
			return false, nil
		}
		unknown = errors.Is(err, errUnknownOutcome)
		w.stats.insertErrors.Add(1)
		w.log.Warn("chlog: insert failed", "seq", m.seq, "rows", m.rows, "attempt", attempt+1, "outcome_unknown", unknown, "err", err)
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
// instances never share one.
func queryID(m blockMeta) string {
	return "stream-relay-" + strconv.FormatUint(m.seq, 10) + "-" + quoteID(m.first[:])
}

// errStillRunning says an earlier attempt of a block still runs on the server.
var errStillRunning = errors.New("chlog: an earlier insert of the block is still running")

// unknownSettle is how long a resumed server gets to pick up requests it
// had received but not started (a frozen server's backlog) before the relay
// looks for an earlier attempt of a block.
const unknownSettle = 500 * time.Millisecond

// present reports whether the block's rows are already in the table, once
// no earlier attempt of it is running any more.
func (w *Writer) present(ctx context.Context, m blockMeta) (bool, error) {
	select {
	case <-time.After(unknownSettle):
	case <-ctx.Done():
		return false, ctx.Err()
	}
	qctx, cancel := context.WithTimeout(ctx, w.o.InsertTimeout)
	defer cancel()
	for {
		run, err := w.ch.running(qctx, queryID(m))
		if err != nil {
			return false, err
		}
		if !run {
			break
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-qctx.Done():
			return false, errStillRunning
		}
	}
	n, err := w.ch.idsPresent(qctx, w.o.Database, w.o.Table, m.first[:], m.last[:])
	if err != nil {
		return false, err
	}
	want := 2
	if m.first == m.last {
		want = 1
	}
	if n > 0 && n < want {
		w.log.Error("chlog: block partly in ClickHouse (crossed a partition?); not re-sent, some rows may be missing", "seq", m.seq, "rows", m.rows)
	}
	return n > 0, nil
}

// backoff returns the wait before retry attempt+1: 200ms doubling, at most 30s.
func backoff(attempt int) time.Duration {
	d := 200 * time.Millisecond << min(attempt, 8)
	return min(d, 30*time.Second)
}
