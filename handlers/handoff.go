package handlers

import (
	"sync"
	"sync/atomic"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// A relayed request has two phases. Up to its response head it goes
// through auth, limits, the record, the upstream connection and request,
// and waits for the upstream's head: deep calls that grow a goroutine's
// stack to 8 KiB. Then, for as long as the stream lasts (minutes, for an
// LLM), the connection's goroutine only waits for the upstream and writes
// to the client, some 2 KiB deep. Go never shrinks a waiting goroutine's
// stack below four times what it uses, so a stream served the plain way
// keeps the 8 KiB its first phase grew.
//
// With Options.SmallStacks, handOff runs the first phase on a helper
// goroutine while the
// connection's goroutine waits, shallow, for it to finish, and so does
// finishApart with the stream's end (the record's way to the sinks): the
// connection's goroutine stays at 4 KiB for the whole stream and the next
// ones on the connection, and the helper's deep stack serves other
// requests. One stream open costs
// 4 KiB of stack instead of 8; a request waiting for the upstream's head
// holds both (12 KiB), and only for that wait.
//
// Each handoff costs two goroutine switches, four a streamed request, and
// below saturation the scheduler wakes another thread for each: measured
// at 1,000 streams/s, 15 % more CPU per request (350-374 against 305-314
// µs); in return, 2,000 open streams took 4.5 KiB less RSS each (25 against
// 29.4 KiB). Hence an option, off by default.
//
// Idle helpers wait for work; up to maxIdleHelpers of them are kept, the
// others end, and a request that finds none idle starts a new one.

// maxIdleHelpers bounds the helpers kept waiting for work: enough for the
// requests that begin at once under load, few beside the streams they serve.
const maxIdleHelpers = 64

// helpers are the goroutines serving requests' first phase.
type helpers struct {
	work     chan *serveCall // unbuffered: a send succeeds when a helper is idle
	idle     atomic.Int32    // helpers waiting on work, or about to
	quit     chan struct{}   // closed by Close: idle helpers end
	quitOnce sync.Once
}

// serveCall is one request's first phase, or its record's way to the
// sinks, handed to a helper.
type serveCall struct {
	ctx  *fasthttp.RequestCtx
	rec  *record.Record // finish it, instead of serving ctx
	done chan struct{}  // the helper is done with ctx or rec
}

var serveCalls = sync.Pool{New: func() any { return &serveCall{done: make(chan struct{}, 1)} }}

func (hs *helpers) init() {
	hs.work = make(chan *serveCall)
	hs.quit = make(chan struct{})
}

// handOff serves ctx up to its response head on a helper and returns when
// the helper is done with it; the response body (a stream) is written
// after the handler returns, on the calling goroutine.
func (h *Relay) handOff(ctx *fasthttp.RequestCtx) {
	call := serveCalls.Get().(*serveCall)
	call.ctx = ctx
	h.run(call)
}

// finishApart is the finisher of a stream copied after the handler
// returned: the record's end (token counts from the captured body, the
// sinks, the token budget) is as deep as the first phase, and runs on a
// helper too, while the connection's goroutine waits.
func (h *Relay) finishApart(rec *record.Record) {
	call := serveCalls.Get().(*serveCall)
	call.rec = rec
	h.run(call)
}

// run hands call to an idle helper, or a new one, and waits until it is
// done.
func (h *Relay) run(call *serveCall) {
	select {
	case h.helpers.work <- call:
	default:
		go h.help(call)
	}
	<-call.done
	call.ctx, call.rec = nil, nil
	serveCalls.Put(call)
}

// help serves call, then waits for the next one, unless enough helpers are
// idle already or the relay is closed.
func (h *Relay) help(call *serveCall) {
	hs := &h.helpers
	for {
		if call.rec != nil {
			h.finish(call.rec)
		} else {
			h.serve(call.ctx)
		}
		call.done <- struct{}{}
		var ok bool
		if call, ok = nextJob(&hs.idle, maxIdleHelpers, hs.work, hs.quit); !ok {
			return
		}
	}
}

// nextJob counts a goroutine of a kind (idle) idle while it waits for its
// next job on jobs; false, at once, when most of its kind are idle already,
// or when quit is closed: the goroutine is to end.
func nextJob[T any](idle *atomic.Int32, most int32, jobs <-chan T, quit <-chan struct{}) (T, bool) {
	var job T
	if idle.Add(1) > most {
		idle.Add(-1)
		return job, false
	}
	defer idle.Add(-1)
	select {
	case job = <-jobs:
		return job, true
	case <-quit:
		return job, false
	}
}

// Close ends the idle helpers and the idle goroutines of detached streams
// (detach.go); a request served after it gets one of its own, which ends
// with it.
func (h *Relay) Close() {
	h.helpers.quitOnce.Do(func() { close(h.helpers.quit) })
}
