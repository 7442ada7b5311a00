package chlog

import (
	"context"
	"os"
	"path/filepath"
	"time"
)

// replayer re-sends spooled blocks oldest first whenever ClickHouse answers,
// deleting each file only after its insert succeeded. It runs until Close.
func (w *Writer) replayer() {
	defer close(w.replayDone)
	failures := 0
	wait := w.o.FlushInterval
	for {
		t := time.NewTimer(wait)
		select {
		case <-w.ctx.Done():
			t.Stop()
			return
		case <-w.kickRep:
		case <-t.C:
		}
		t.Stop()
		if w.replayAll() {
			failures = 0
			wait = w.o.FlushInterval
			continue
		}
		wait = backoff(failures + 2) // 800ms, 1.6s, ... 30s
		failures++
	}
}

// replayAll sends spool files until the spool is empty (true) or an insert
// fails (false).
func (w *Writer) replayAll() bool {
	if w.schemaPending.Load() {
		ctx, cancel := context.WithTimeout(w.ctx, w.o.InsertTimeout)
		err := w.ensureSchema(ctx)
		cancel()
		if err != nil {
			w.log.Warn("chlog: ClickHouse still unreachable", "err", err)
			return false
		}
		w.schemaPending.Store(false)
	}
	for {
		f, ok := w.spool.next()
		if !ok {
			w.down.Store(false)
			return true
		}
		data, err := os.ReadFile(filepath.Join(w.spool.dir, f.name))
		if err != nil {
			_ = w.spool.done(f, false)
			w.log.Error("chlog: replay: read spool file", "file", f.name, "err", err)
			return false
		}
		m := blockMeta{seq: f.seq, rows: f.rows}
		copy(m.first[:], f.first)
		copy(m.last[:], f.last)
		unknown, err := w.deliver(w.ctx, m, data, f.unknown, 0)
		if err != nil {
			if unknown && !f.unknown {
				w.spool.markUnknown(f) // the next attempt must check first
			}
			_ = w.spool.done(f, false)
			w.log.Warn("chlog: replay failed; will retry", "file", f.name, "err", err)
			return false
		}
		if err := w.spool.done(f, true); err != nil {
			w.log.Error("chlog: replay: delete spool file after insert", "file", f.name, "err", err)
		}
		w.stats.rowsReplayed.Add(int64(f.rows))
		w.log.Info("chlog: replayed spooled block", "file", f.name, "rows", f.rows)
	}
}
