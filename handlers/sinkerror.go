package handlers

import (
	"log/slog"
	"time"

	"github.com/stream-relay/stream-relay/internal/ratelog"
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
	every ratelog.Every
}

func (e *sinkErrors) log(l *slog.Logger, rec *record.Record, err error) {
	if ok, suppressed := e.every.Allow(sinkErrEvery); ok {
		l.Error("storage did not keep a finished request's row as promised",
			"request_id", rec.IDString(), "err", err, "suppressed_since_last", suppressed)
	}
}

// openErrors logs, rate-limited like sinkErrors, why an upstream failed
// before it answered (the DNS lookup, the refused connect, the TLS
// handshake, the timeout): the client's 502 or 504 says only "cannot
// connect to the upstream", and the row no more. The error names the
// upstream's address, never a key.
type openErrors struct {
	every ratelog.Every
}

func (e *openErrors) log(l *slog.Logger, rec *record.Record, errType string, err error) {
	switch errType {
	case record.ErrUpstreamConnect, record.ErrUpstreamTimeout, record.ErrUpstreamReset:
	default:
		return // the client left, the relay is stopping, or no key: said elsewhere
	}
	if ok, suppressed := e.every.Allow(sinkErrEvery); ok {
		l.Warn("upstream failed before answering", "route", rec.Route, "error_type", errType,
			"request_id", rec.IDString(), "err", err, "suppressed_since_last", suppressed)
	}
}
