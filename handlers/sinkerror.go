package handlers

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/stream-relay/stream-relay/record"
)

// sinkErrEvery is the least time between two log lines about failed sink
// writes: under a broken disk every request fails alike, and one line with
// a count says as much as thousands.
const sinkErrEvery = 10 * time.Second

// sinkErrors logs sink write failures (a WAL write or fsync that failed,
// storage closed) at error level, rate-limited. The sinks count them
// (relay_storage_wal_errors_total).
type sinkErrors struct {
	last       atomic.Int64 // mono.Now of the last line
	suppressed atomic.Int64 // failures since the last line
}

func (e *sinkErrors) log(l *slog.Logger, rec *record.Record, err error) {
	now := mono.Now()
	last := e.last.Load()
	if now-last < int64(sinkErrEvery) || !e.last.CompareAndSwap(last, now) {
		e.suppressed.Add(1)
		return
	}
	l.Error("storage did not keep a finished request's row as promised",
		"request_id", rec.IDString(), "err", err, "suppressed_since_last", e.suppressed.Swap(0))
}
