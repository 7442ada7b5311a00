package handlers

import (
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/stream-relay/stream-relay/internal/ratelog"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
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

// openErrors logs, rate-limited like sinkErrors, why an upstream could not
// be reached (the DNS lookup, the refused connect, the TLS handshake, the
// connect's timeout, the relay's own max_conns) or did not answer in time:
// the client's 502 or 504 says only "cannot connect to the upstream", and
// the row no more. Only those causes are logged: an error about what the
// upstream sent back (a broken answer) may quote its bytes, and an upstream
// that echoes the request would put the provider key and the prompt in the
// log. The rate is per route (one line per route each sinkErrEvery): a
// shared one logged the first route's cause and suppressed the others' (a
// wrong host name, an expired certificate), which no row or answer holds.
type openErrors struct {
	mu      sync.Mutex
	byRoute map[string]*ratelog.Every // at most maxOpenErrRoutes
	shared  ratelog.Every             // the routes past that
}

// maxOpenErrRoutes bounds openErrors' routes (a reload's new names add).
const maxOpenErrRoutes = 1024

// every returns route's rate limit.
func (e *openErrors) every(route string) *ratelog.Every {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ev := e.byRoute[route]; ev != nil {
		return ev
	}
	if len(e.byRoute) >= maxOpenErrRoutes {
		return &e.shared
	}
	if e.byRoute == nil {
		e.byRoute = map[string]*ratelog.Every{}
	}
	ev := new(ratelog.Every)
	e.byRoute[route] = ev
	return ev
}

func (e *openErrors) log(l *slog.Logger, rec *record.Record, errType string, err error) {
	var cause string
	var de *upstream.DialError
	switch {
	case errType == record.ErrUpstreamConnect && errors.As(err, &de):
		cause = de.Err.Error() // the dialer's and TLS's own words: no bytes of the upstream's
	case errType == record.ErrUpstreamConnect && errors.Is(err, fasthttp.ErrNoFreeConns):
		cause = "the route's max_conns connections to the upstream are all in use"
	case errType == record.ErrUpstreamConnect && errors.Is(err, upstream.ErrWSConnsFull):
		cause = err.Error()
	case errType == record.ErrUpstreamTimeout:
		cause = "no answer within first_byte_timeout (or the connect's connect_timeout)"
	default:
		return // the client left, the relay is stopping, no key, or a broken answer: said elsewhere
	}
	if ok, suppressed := e.every(rec.Route).Allow(sinkErrEvery); ok {
		l.Warn("upstream failed before answering", "route", rec.Route, "error_type", errType,
			"request_id", rec.IDString(), "cause", cause, "suppressed_since_last", suppressed)
	}
}
