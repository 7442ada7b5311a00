package mockllm

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"time"
)

// stream writes one API response under the request's control headers: it
// paces chunks, stalls or resets on cue, and tells a client that went away
// from a server that is closing.
type stream struct {
	s       *Server
	w       http.ResponseWriter
	rc      *http.ResponseController
	ctx     context.Context
	ctl     *control
	timer   *time.Timer // reused for every delay of the stream
	started bool        // response headers written
}

func newStream(s *Server, w http.ResponseWriter, r *http.Request, ctl *control) *stream {
	return &stream{s: s, w: w, rc: http.NewResponseController(w), ctx: r.Context(), ctl: ctl}
}

// events is a streamed body: head events, n chunks made by chunk, then tail
// events. chunk's result is only used until the next call.
type events struct {
	contentType string
	length      int64 // > 0: the body's size, sent as Content-Length
	head        [][]byte
	n           int
	chunk       func(i int) []byte
	tail        [][]byte
}

// run streams ev with a flush after every event or chunk. The stall or reset
// cue K is checked before chunk K, and before the head events when K is 0.
func (st *stream) run(ev *events) {
	h := st.w.Header()
	h.Set("Content-Type", ev.contentType)
	h.Set("Cache-Control", "no-cache")
	if st.ctl.requestID != "" {
		h.Set("X-Request-Id", st.ctl.requestID)
	}
	if ev.length > 0 {
		h.Set("Content-Length", strconv.FormatInt(ev.length, 10))
	}
	st.w.WriteHeader(http.StatusOK)
	st.started = true
	if !st.flush() {
		return
	}
	for i := 0; i <= ev.n; i++ {
		if st.ctl.stops(i) {
			st.cut()
			return
		}
		if i == 0 {
			for _, e := range ev.head {
				if !st.send(e) {
					return
				}
			}
		}
		if i == ev.n {
			break
		}
		if i > 0 && !st.wait(st.ctl.delay) {
			st.abort(false)
			return
		}
		if !st.send(ev.chunk(i)) {
			return
		}
	}
	for _, e := range ev.tail {
		if !st.send(e) {
			return
		}
	}
}

// whole answers a non-streaming request with one JSON body, after the stall
// or reset cue if one was given.
func (st *stream) whole(body []byte) {
	if st.ctl.cut() {
		st.cut()
		return
	}
	st.started = true
	writeJSONBytes(st.w, http.StatusOK, body)
}

func (st *stream) send(p []byte) bool {
	if _, err := st.w.Write(p); err != nil {
		st.gone()
		return false
	}
	return st.flush()
}

func (st *stream) flush() bool {
	if err := st.rc.Flush(); err != nil {
		st.gone()
		return false
	}
	return true
}

// wait sleeps d, and reports false instead when the client went away or the
// server is closing.
func (st *stream) wait(d time.Duration) bool {
	if d <= 0 {
		select {
		case <-st.ctx.Done():
			st.gone()
			return false
		case <-st.s.done:
			return false
		default:
			return true
		}
	}
	if st.timer == nil {
		st.timer = time.NewTimer(d)
	} else {
		st.timer.Reset(d)
	}
	select {
	case <-st.timer.C:
		return true
	case <-st.ctx.Done():
		st.timer.Stop()
		st.gone()
		return false
	case <-st.s.done:
		st.timer.Stop()
		return false
	}
}

// cut performs the stall or reset the control headers asked for.
func (st *stream) cut() {
	if st.ctl.resetAfter != never {
		st.abort(true)
		return
	}
	t := time.NewTimer(st.s.o.StallTimeout)
	defer t.Stop()
	select {
	case <-st.ctx.Done():
		st.gone()
	case <-st.s.done:
		st.abort(false)
	case <-t.C:
		st.abort(false)
	}
}

// abort drops the connection so that the client sees a broken response
// rather than a clean end, which net/http would write if the handler just
// returned. rst sends a TCP RST instead of a FIN.
func (st *stream) abort(rst bool) {
	if st.started {
		// Hijack discards what the response buffer still holds.
		_ = st.rc.Flush()
	}
	conn, _, err := st.rc.Hijack()
	if err != nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && rst {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// gone counts a response that ended because the client went away; a server
// that is closing cuts its own connections and does not count.
func (st *stream) gone() {
	select {
	case <-st.s.done:
	default:
		st.s.closed.Add(1)
	}
}
