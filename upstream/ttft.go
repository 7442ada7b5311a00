package upstream

import (
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/usage"
)

// tokenScanner is a stream's first-token clock: usage.ContentScanner, whose
// per-API rules are shared with `relay reparse`, started on the first read
// with the API of the request path, the route's kind and the status. The
// zero value scans with the Generic rules.
//
// It also watches every read for an error the provider sends inside the
// response (usage.StreamErrorScanner: `event: error`, `data:
// {"error":...}`), which the status (200, already sent) does not tell: the
// record is typed upstream_stream_error, and the stream's target counts it
// a failure for its passive health when the stream ends
// (Stream.settleStreamError).
type tokenScanner struct {
	usage.ContentScanner
	errs    usage.StreamErrorScanner
	started bool
}

func (s *tokenScanner) reset() { *s = tokenScanner{} }

// start readies the scanner for rec's response, once.
func (s *tokenScanner) start(rec *record.Record, kind record.Kind) {
	if s.started {
		return
	}
	s.started = true
	storedRead := kind == record.KindSSE && usage.StoredRead(rec.Method, rec.ResponseHeaders)
	// An sse route's binary answer (TTS audio through a catch-all route)
	// is read as a raw route's: its first byte is its first token. A
	// stored file read back (GET) has none, binary or not.
	binary := kind == record.KindRaw || kind == record.KindSSE && !storedRead && usage.BinaryAnswer(rec.ResponseHeaders)
	s.Start(usage.APIForPath(rec.Path), binary, rec.Status)
	// A read (GET, HEAD) answers with stored objects, which may tell of
	// errors of their own (a batch's error file, a job's "error"): none is
	// this request's, nor its target's fault; and it has no first token (a
	// file's content read in 1 ms was a route's TTFT). A read that resumes
	// a stream (GET /v1/responses/{id}?stream=true) is scanned: its events
	// are a generation's.
	if storedRead {
		s.Stop()
	}
	s.errs.Start(kind != record.KindSSE || binary || storedRead, rec.Status)
}

// scan reports whether b (the next bytes of the response) completes the
// first token.
func (s *tokenScanner) scan(b []byte) bool { return s.Scan(b) }

// scanError reports whether b completes an error event of the provider's
// (once: it reports false after that, at no cost).
func (s *tokenScanner) scanError(b []byte) bool { return s.errs.Scan(b) }

// account runs both scans of one relayed read on rec: the first token
// stamps its TTFT at at, an error event types the record
// upstream_stream_error.
func (s *tokenScanner) account(rec *record.Record, kind record.Kind, b []byte, at time.Duration) {
	s.start(rec, kind)
	if rec.TTFT == record.None && s.scan(b) {
		rec.TTFT = at
	}
	if s.scanError(b) {
		rec.ErrorType = record.ErrUpstreamStreamError
	}
}
