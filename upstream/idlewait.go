package upstream

import (
	"errors"
	"net"
	"sync/atomic"
)

// A hijacked stream (WriteHijacked) whose upstream goes quiet between
// events waits for the next one without a goroutine. The goroutine that
// writes a stream has a stack grown by the writing to 4 KiB (or 8), and
// the runtime never shrinks a stack back to 2 KiB (runtime/stack.go
// shrinkstack: a goroutine would have to use less than 224 bytes of it),
// so a stream that waits most of its life would hold that stack all the
// while; nginx holds nothing but the connection's state. Instead, the
// stream's upstream socket goes into an epoll set of the relay's own
// (idlewait_linux.go), armed once for readability, and the writer's
// goroutine is free; when the socket has bytes, hangs up or fails, the set's
// goroutine hands the stream back to its owner (wake), which resumes it
// on a writer. The watchdog's abort (a timeout, the client gone, shutdown)
// shuts the upstream socket down and wakes the stream itself (cancelIdle),
// whether or not the set sees an event for it (the first wake wins). A
// handover costs two system calls and a goroutine switch per event, so
// only streams whose last two events came a gap (the owner's idleGap:
// app's server.idle_wait, 100 ms by default) or more apart are handed
// over: token streams (tens of milliseconds between events) wait in
// place; streams that pause (for a tool, a long thought, a slow producer)
// hold no stack through the pause.

// errWouldBlock is readBuf.fill's answer when nothing has arrived and the
// stream is not to wait for it (readBuf.noWait).
var errWouldBlock = errors.New("upstream: nothing to read yet")

// idleWaits counts the waits handed to the idle set.
var idleWaits atomic.Uint64

// IdleWaits returns how many times a quiet stream has waited for its next
// event without a goroutine since the process started
// (relay_idle_waits_total).
func IdleWaits() uint64 { return idleWaits.Load() }

// IdleStreams returns how many streams wait in the idle set now
// (relay_idle_streams); 0 where there is no set.
func IdleStreams() int { return idle.len() }

// hijackedStreams counts the streams written after their server let go
// of them (SetHijacked).
var hijackedStreams atomic.Uint64

// HijackedStreams returns how many streams have been written apart from
// the server that read their requests since the process started
// (relay_detached_streams_total).
func HijackedStreams() uint64 { return hijackedStreams.Load() }

// SetHijacked keeps the connection a hijacked stream writes to and
// whether it may serve another request after it, for whichever of its
// owner's goroutines writes it, first or after a wait (Hijacked).
func (s *Stream) SetHijacked(c net.Conn, keep bool) {
	s.hc, s.hkeep = c, keep
	s.rctx = nil // the server lets go of the request's context: not held by the stream
	hijackedStreams.Add(1)
}

// Hijacked returns what SetHijacked kept.
func (s *Stream) Hijacked() (net.Conn, bool) { return s.hc, s.hkeep }

// Idle states of a stream (Stream.idleState).
const (
	notIdle int32 = iota
	inIdleSet
)

// resumeIdle ends s's wait if it is still waiting: whoever wins the
// state's change (the set's goroutine or abort) calls wake.
func (s *Stream) resumeIdle() {
	if s.idleState.CompareAndSwap(inIdleSet, notIdle) {
		s.wake(s)
	}
}
