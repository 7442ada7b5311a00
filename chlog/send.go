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
