package upstream

import (
	"bufio"
	"bytes"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// An upstream that answers its head and then closes, resets or goes silent
// before the first byte of its body used to leave the client an empty
// reply: the response head waits in the client writer's buffer for the
// body's first bytes (see WriteTo), and a failed copy closes the
// connection without flushing it. Nothing has reached the client then, so
// the relay can still answer as it does when the upstream fails before its
// head: a 502 upstream_reset (504 upstream_timeout) with the request's
// X-Request-Id, its row saying so. A route that can still fail over does so
// instead (firstbody.go): this answer is for the last attempt.

// answerCut replaces the response head waiting in bw, when none of the
// body went out and the stream failed on its upstream's side, with the
// relay's own error answer, and flushes it; it reports whether it did. The
// connection is closed after it (its reads and the upstream's are in an
// unknown state).
func (s *Stream) answerCut(bw *bufio.Writer) bool {
	failed := s.reason.Load()
	if bw == nil || s.client == nil || s.copied > 0 || failed == nil || bw.Buffered() == 0 {
		return false
	}
	status, msg, ok := CutAnswer(*failed)
	if !ok {
		return false // the client's own doing, or the relay's shutdown
	}
	// The request took its token: the answer says so, as the upstream's
	// head it replaces did.
	var lines [128]byte
	b := AppendErrorResponse(nil, status, *failed, "route "+s.route.Name+": "+msg, s.rec.ID[:], s.rate.appendLines(lines[:0]))
	bw.Reset(s.client) // drops the buffered head
	if _, err := bw.Write(b); err != nil || bw.Flush() != nil {
		return false
	}
	s.rec.Status = status
	// The row's response headers are those of the answer the client got,
	// not the upstream's head it never saw; the record of the attempts
	// stays, its last one's status become this failure.
	tries := cutAttempts(s.rec.ResponseHeaders, *failed)
	var h fasthttp.ResponseHeader
	if h.Read(bufio.NewReader(bytes.NewReader(b))) == nil {
		s.rec.ResponseHeaders = CaptureResponseHeaders(s.rec.ResponseHeaders[:0], &h)
		if tries != nil {
			s.rec.ResponseHeaders = appendMember(s.rec.ResponseHeaders, tries)
		}
	}
	return true
}

// cutAttempts returns the "x-relay-attempts" member of the captured
// response headers hdr (appendAttempts), its last attempt's status
// replaced by errType; nil when hdr has none (one attempt).
func cutAttempts(hdr []byte, errType string) []byte {
	i := bytes.LastIndex(hdr, []byte(attemptsMember)) // the relay's, appended last
	if i < 0 {
		return nil
	}
	v := hdr[i+len(attemptsMember):]
	end := -1
	for j := 0; j < len(v); j++ { // the closing quote: labels may hold escaped ones
		if v[j] == '\\' {
			j++
		} else if v[j] == '"' {
			end = j
			break
		}
	}
	eq := bytes.LastIndexByte(v[:max(end, 0)], '=')
	if end < 0 || eq < 0 {
		return nil
	}
	m := append([]byte(nil), hdr[i:i+len(attemptsMember)+eq+1]...)
	return append(append(m, errType...), '"')
}

// appendMember adds member (`"name":"value"`) to the JSON object in dst.
func appendMember(dst, member []byte) []byte {
	if len(dst) < 2 || dst[len(dst)-1] != '}' {
		return dst
	}
	return append(append(openMember(dst), member...), '}')
}

// openMember opens the JSON object in dst, a non-empty one, for one more
// member: its closing brace taken off and, after another member, a comma.
func openMember(dst []byte) []byte {
	dst = dst[:len(dst)-1]
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	return dst
}

// CutAnswer returns the status and message of the relay's answer to an
// upstream that failed after its response head and before the first byte
// of its body with errType (upstream_reset or upstream_timeout); ok is
// false for another error type.
func CutAnswer(errType string) (status int, msg string, ok bool) {
	switch errType {
	case record.ErrUpstreamReset:
		return 502, "the upstream closed the connection, or broke its body's framing, before the first byte of its body", true
	case record.ErrUpstreamTimeout:
		return 504, "the upstream sent no byte of its body in time", true
	}
	return 0, "", false
}
