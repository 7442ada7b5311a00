package upstream

import (
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/usage"
)

// tokenScanner is a stream's first-token clock: usage.ContentScanner, whose
// per-API rules are shared with `relay reparse`, started on the first read
// with the API of the request path, the route's kind and the status. The
// zero value scans with the Generic rules.
type tokenScanner struct {
	usage.ContentScanner
	started bool
}

func (s *tokenScanner) reset() { *s = tokenScanner{} }

// start readies the scanner for rec's response, once.
func (s *tokenScanner) start(rec *record.Record, kind record.Kind) {
	if s.started {
		return
	}
	s.started = true
	s.Start(usage.APIForPath(rec.Path), kind == record.KindRaw, rec.Status)
}

// scan reports whether b (the next bytes of the response) completes the
// first token.
func (s *tokenScanner) scan(b []byte) bool { return s.Scan(b) }
