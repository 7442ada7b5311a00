package handlers

import (
	"errors"
	"io"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/stream-relay/stream-relay/internal/socket"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
)

// A stream written by the server's connection goroutine keeps, for as
// long as it lasts, what the server holds for a request: the goroutine's
// stack, grown to 8 KiB by the deep calls up to the response head, and the
// request context with the request's headers (about 4 KiB). With
// Options.ServeConn set, a streamed response is detached instead: once its
// head is ready the handler takes the connection from the server
// (fasthttp's Hijack), and a goroutine of the relay's own writes the head
// and the stream, some 1.5 KiB deep, so its stack stays at 4 KiB; the
// server's goroutine and request context go back to their pools at once.
// When the stream ended whole, the connection's next requests (ServeConn)
// are a server's, a goroutine already grown for that.
//
// Measured with 2,000 open streams of one event a second (RSS at the
// plateau minus idle, per stream): 26.1 KiB served by the server's
// goroutine, 18.3 KiB detached. The price is three goroutine handoffs a
// streamed request (the server's hijack goroutine, the writer, the next
// server), each of which may wake another thread below saturation; in
// interleaved rounds the relay's CPU per stream was the same within the
// rounds' spread, at saturation and at 1,000 streams/s (README, "Memory
// to plan for").
//
// Options.DetachAbove spares those handoffs where the memory matters
// little: a stream is detached only while more requests than that are in
// flight (Relay.active), its own included.
//
// The goroutines of both kinds are kept for reuse, up to maxIdleDetached
// each: a new one would grow its stack again, copying it, at every
// stream.

// maxIdleDetached bounds the idle goroutines kept of each kind.
const maxIdleDetached = 32

// detached are the goroutines that write detached streams (writers) and
// serve their connections' next requests (servers).
type detached struct {
	streams     chan detachedStream // unbuffered: a send succeeds when a writer is idle
	ends        chan detachedEnd    // unbuffered: a send succeeds when a server is idle
	idleWriters atomic.Int32
	idleServers atomic.Int32
	resume      func(*upstream.Stream) // Relay.resumeDetached, bound once

	mu      sync.Mutex
	serving map[net.Conn]struct{} // connections in ServeConn after a detached stream
}

// detachedStream is a stream handed to a writer.
type detachedStream struct {
	s    *upstream.Stream // its connection from the server: s.Hijacked
	head *[]byte          // the response head, from headPool; nil once written
}

var headPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func (d *detached) init() {
	d.streams = make(chan detachedStream)
	d.ends = make(chan detachedEnd)
	d.serving = make(map[net.Conn]struct{})
}

// drain ends the waits for a next request of the connections served after
// a detached stream: the server counts such a connection, served anew, as
// idle only 5 s after it began serving it, so its shutdown would wait that
// long for each. A read deadline in the past ends the wait now (the server
// then closes the connection); a request being read is cut, and a request
// being answered finishes, the connection closed after it.
func (d *detached) drain() {
	d.mu.Lock()
	for c := range d.serving {
		if i, ok := c.(idler); ok && !i.Idle() {
			// A request under way (an upload) is served (gate's
			// begunBeforeDrain); the server closes the connection
			// after its answer, as it shuts down.
			continue
		}
		stopReading(c)
	}
	d.mu.Unlock()
}

// cutUploads ends the reads of the connections served after a detached
// stream that are inside a request (an upload still arriving when the
// grace period is over): a read deadline in the past, whose timeout
// ServerError answers 503 shutting_down with its row (not CloseRead: the
// end of the stream would read as the client's leaving). It returns how
// many it cut.
func (d *detached) cutUploads() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for c := range d.serving {
		if i, ok := c.(idler); ok && !i.Idle() {
			_ = c.SetReadDeadline(time.Unix(1, 0))
			n++
		}
	}
	return n
}

// uploads returns how many connections served after a detached stream are
// inside a request.
func (d *detached) uploads() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for c := range d.serving {
		if i, ok := c.(idler); ok && !i.Idle() {
			n++
		}
	}
	return n
}

// idler is a client connection that knows whether it waits for a request
// (app's edgeConn).
type idler interface {
	Idle() bool
}

// stopReading ends c's reads at once, so that the server serving it sees
// its end and closes it: its reading side shut (a read deadline in the
// past, where it cannot be, as over TLS). A deadline alone did not hold:
// the server sets its own when it begins to wait for a request, and a
// connection swept (or found draining) just before ServeConn began waited
// for its read_timeout instead of closing at the drain.
func stopReading(c net.Conn) {
	if cr, ok := socket.Under[interface{ CloseRead() error }](c); ok && cr.CloseRead() == nil {
		return
	}
	_ = c.SetReadDeadline(time.Unix(1, 0))
}

// detach has s written apart from the server: see above. The request must
// be HTTP/1.1 (chunked).
func (h *Relay) detach(ctx *fasthttp.RequestCtx, rec *record.Record, s *upstream.Stream) {
	rec.KeepBorrowedBody() // the request is reset once the server lets go of it
	keep := !ctx.Request.Header.ConnectionClose() && !ctx.Response.Header.ConnectionClose()
	if !keep {
		ctx.Response.Header.SetConnectionClose()
	}
	ctx.Response.Header.SetContentLength(-1) // chunked
	head := headPool.Get().(*[]byte)
	*head = ctx.Response.Header.AppendBytes((*head)[:0])
	ctx.HijackSetNoResponse(true)
	g := guardHijack(ctx, func() {
		headPool.Put(head)
		_ = s.CloseWithError(errHijackNotRun)
	})
	ctx.Hijack(func(c net.Conn) {
		g.done()
		s.SetHijacked(c, keep)
		h.startDetached(detachedStream{s: s, head: head})
	})
}

// hijackGuarded is a client connection that runs a function when the server
// closes it without having run its hijack handler (app's edgeConn):
// fasthttp does not run the handler when writing out answers it held for
// pipelining, or clearing the connection's deadlines, fails first. The
// stream was then never written nor ended: its upstream connection, its
// record (no row) and the relay's count of requests in flight (a drain
// that waited its whole grace) were held for good.
type hijackGuarded interface {
	GuardHijack(f func()) // nil: the handler runs
}

// hijackClaim is the guard of one hijack (guardHijack).
type hijackClaim struct{ c hijackGuarded }

// guardHijack has end run if ctx's connection closes before its hijack
// handler runs; the handler calls done first. A connection that cannot
// guard (fasthttp's wrapper, when bytes the client sent ahead wait in its
// reader) gets no guard.
func guardHijack(ctx *fasthttp.RequestCtx, end func()) hijackClaim {
	g, _ := ctx.Conn().(hijackGuarded)
	if g != nil {
		g.GuardHijack(end)
	}
	return hijackClaim{g}
}

// done clears the guard: the hijack handler runs.
func (g hijackClaim) done() {
	if g.c != nil {
		g.c.GuardHijack(nil)
	}
}

// errHijackNotRun ends a stream whose hijack handler never ran.
var errHijackNotRun = errors.New("handlers: the connection closed before the stream could be written")

// startDetached gives j to an idle writer, or to a new one.
func (h *Relay) startDetached(j detachedStream) {
	select {
	case h.detached.streams <- j:
	default:
		go h.writeDetached(j)
	}
}

// resumeDetached goes on with a stream whose upstream has more after a
// wait without a writer (upstream/idlewait.go).
func (h *Relay) resumeDetached(s *upstream.Stream) {
	h.startDetached(detachedStream{s: s})
}

// detachedEnd is a written stream's end, handed to a server: the
// connection to serve (keep) or close.
type detachedEnd struct {
	c    net.Conn
	keep bool
}

// writeDetached writes j's stream, then hands its end to a server, and
// waits for the next stream unless enough writers are idle already or the
// relay is closed.
func (h *Relay) writeDetached(j detachedStream) {
	d := &h.detached
	for {
		// The record is finished (in the WAL, with durability wal) before
		// the response's end is flushed, as when the server writes it.
		c, keep := j.s.Hijacked() // the stream is let go of once written
		ok, waiting := j.s.WriteHijacked(j.head, &headPool, d.resume, h.o.IdleWait)
		if waiting {
			// The stream waits for its upstream without this goroutine
			// (upstream/idlewait.go); resumeDetached gives it to a writer.
			var more bool
			if j, more = nextJob(&d.idleWriters, maxIdleDetached, d.streams, h.helpers.quit); !more {
				return
			}
			continue
		}
		end := detachedEnd{c: c, keep: ok && keep && !h.connsClosing.Load()}
		if end.keep {
			end.c = connUnder(end.c)
		}
		select {
		case d.ends <- end:
		default:
			go h.serveDetached(end)
		}
		var more bool
		if j, more = nextJob(&d.idleWriters, maxIdleDetached, d.streams, h.helpers.quit); !more {
			return
		}
	}
}

// serveDetached serves a written stream's connection's next requests (or
// closes it), then waits for the next end
// unless enough servers are idle already or the relay is closed.
func (h *Relay) serveDetached(end detachedEnd) {
	d := &h.detached
	for {
		if end.keep {
			d.mu.Lock()
			d.serving[end.c] = struct{}{}
			d.mu.Unlock()
			if h.connsClosing.Load() { // CloseIdle may have swept before the add
				stopReading(end.c)
			}
			_ = h.o.ServeConn(end.c) // closes c unless a stream took it again
			d.mu.Lock()
			delete(d.serving, end.c)
			d.mu.Unlock()
		} else {
			_ = end.c.Close()
		}
		var more bool
		if end, more = nextJob(&d.idleServers, maxIdleDetached, d.ends, h.helpers.quit); !more {
			return
		}
	}
}

// hijackLayout is how connUnder reads fasthttp's hijacked connection: its
// type and the offset of its reader field, checked once.
var hijackLayout struct {
	once   sync.Once
	typ    reflect.Type
	offset uintptr
	ok     bool // the layout is as expected
}

// connUnder returns the connection under c, fasthttp's hijacked one, when
// c reads straight from it: nothing the client sent ahead (pipelined) is
// buffered in front. Else, or when c is not what fasthttp's hijack is
// known to give, c itself: serving it again wraps it once more, which is
// correct, only slower. fasthttp's type is unexported: it is recognized by
// name and its reader field r checked once, with reflect, to be an
// io.Reader; each call then reads the field at its offset (reflect's
// Field and Elem at every stream showed in the profile).
func connUnder(c net.Conn) net.Conn {
	u, ok := c.(interface{ UnsafeConn() net.Conn })
	if !ok {
		return c
	}
	hijackLayout.once.Do(func() {
		t := reflect.TypeOf(c)
		if t.Kind() != reflect.Pointer || t.String() != "*fasthttp.hijackConn" {
			return
		}
		if f, ok := t.Elem().FieldByName("r"); ok && f.Type == reflect.TypeFor[io.Reader]() && len(f.Index) == 1 {
			hijackLayout.typ, hijackLayout.offset, hijackLayout.ok = t, f.Offset, true
		}
	})
	if !hijackLayout.ok || reflect.TypeOf(c) != hijackLayout.typ {
		return c
	}
	p := reflect.ValueOf(c).UnsafePointer()
	if p == nil {
		return c
	}
	r := *(*io.Reader)(unsafe.Add(p, hijackLayout.offset))
	under := u.UnsafeConn()
	if r == nil || under == nil || !samePointer(r, under) {
		return c // bytes the client sent ahead wait in a reader
	}
	return under
}

// samePointer reports whether r and c hold the same pointer of the same
// type (an interface comparison could panic on an uncomparable type).
func samePointer(r io.Reader, c net.Conn) bool {
	rt, ct := reflect.TypeOf(r), reflect.TypeOf(c)
	return rt == ct && rt.Kind() == reflect.Pointer &&
		reflect.ValueOf(r).UnsafePointer() == reflect.ValueOf(c).UnsafePointer()
}
