package upstream

import (
	"bytes"
	"errors"
	"io"
	"time"
)

// The first byte of the body, awaited before the answer is committed. A
// response head alone reaches nobody: it waits in the client writer's
// buffer until the first bytes of the body go out behind it (WriteTo). An
// upstream that sends its head and then closes, resets or stays silent
// has therefore given the client nothing yet, and a route that could
// still fail over does so instead of cutting the answer (cutanswer.go):
// Open waits for the first byte of the body, still holding the attempt,
// and treats a failure then as a failure before the head: a close or a
// reset as the connect condition (the upstream went away, as a killed or
// restarting one does), silence past the idle timeout as the timeout
// condition. The wait costs nothing the client would see: the head would
// have waited for the same byte in the client writer's buffer.
//
// Only an attempt that may be followed by another one waits: on the last
// one (a route of one target, max_attempts 1, or no target left) the
// stream starts at once, as before, and a cut then gets the client the
// relay's own error answer. Such an attempt's target is reported to its
// passive health by the stream (Stream.pending): a success when the body's
// first byte is relayed (or an empty body ends), a failure when the body is
// cut before it, nothing when the client leaves first.

// ErrCutBeforeBody is wrapped by the error Open returns when the target
// that answered last sent its response head and then failed before the
// first byte of its body (and the route did not fail over on that).
var ErrCutBeforeBody = errors.New("upstream: the response head came, the body did not")

// cutError is a failure between the response head and the body's first
// byte: it is ErrCutBeforeBody and the read's own error.
type cutError struct{ err error }

func (e *cutError) Error() string   { return ErrCutBeforeBody.Error() + ": " + e.err.Error() }
func (e *cutError) Unwrap() []error { return []error{ErrCutBeforeBody, e.err} }

// awaitsBody reports whether an answer of status code, which the route
// does not fail over from by its status, is held until the first byte of
// its body: the route fails over on a cut (connect or timeout).
func (r *Route) awaitsBody(code int) bool {
	return (r.failover.connect || r.failover.timeout) && !r.failsOverOn("", code)
}

// awaitBody waits until the first byte of s's body has arrived (or the
// body turned out empty), for at most its route's idle timeout, and no
// longer than the request timeout allows. What arrived stays in s's read
// buffer, for the copy. On failure it returns the error type and client
// status of the failure, as exchangeOnce does for one before the head; s
// is left to the caller to discard. It allocates nothing when the body
// comes.
func (s *Stream) awaitBody() (string, int, error) {
	if s.body.done {
		return "", 0, nil
	}
	ok, err := s.body.firstData()
	if ok || err != nil {
		return s.cutOrFine(err)
	}
	c, rt := s.up, s.route
	var deadline time.Time // the watchdog's limits for a silent stream
	if rt.IdleTimeout > 0 {
		deadline = time.Now().Add(rt.IdleTimeout)
	}
	if end := s.start.Add(rt.Timeout); rt.Timeout > 0 && (deadline.IsZero() || end.Before(deadline)) {
		deadline = end
	}
	_ = c.SetReadDeadline(deadline)
	// As while the head was awaited, a client that leaves ends the wait.
	s.watchWaiting(c)
	for !ok && err == nil {
		if err = s.rb.fill(); err == nil {
			ok, err = s.body.firstData()
		}
	}
	s.unwatchWaiting()
	s.up = c
	_ = c.SetReadDeadline(time.Time{})
	if err == io.EOF && s.body.mode == bodyClose {
		// A body delimited by the close is complete, and empty: the
		// copy reads its end again.
		s.rb.pending = io.EOF
		err = nil
	}
	if err == nil {
		s.lastRead.Store(int64(time.Since(s.start))) // silence counts from here
	}
	return s.cutOrFine(err)
}

// cutOrFine classifies awaitBody's failure err (nil: none).
func (s *Stream) cutOrFine(err error) (string, int, error) {
	if err == nil {
		return "", 0, nil
	}
	errType, status := classifyOpenError(err)
	if p := s.reason.Load(); p != nil {
		// The watchdog saw the client leave (or the relay shut down).
		errType, status = *p, cutStatus(*p)
	}
	return errType, status, &cutError{err}
}

// firstData reports whether the bytes received so far, none of them
// consumed yet, hold the first byte of the body's data, or show the body
// empty (a last chunk right away). Chunked framing comes first: a chunk
// size line alone is no data yet. An error is a malformed size line.
func (b *bodyReader) firstData() (bool, error) {
	rb := b.rb
	if rb.buffered() == 0 {
		return false, nil
	}
	if b.mode != bodyChunked {
		return true, nil
	}
	p := rb.buf[rb.r:rb.w]
	i := bytes.IndexByte(p, '\n')
	if i < 0 {
		if len(p) > maxChunkSizeLine {
			return false, errChunkSize
		}
		return false, nil
	}
	size, err := parseChunkSize(p[:i+1])
	if err != nil {
		return false, err
	}
	return size == 0 || len(p) > i+1, nil
}
