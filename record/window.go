package record

import (
	"slices"
	"sync"
)

// Window sizes: the head keeps a response's first bytes (Anthropic's
// message_start holds the input token count), the tail its last ones
// (every API's final usage object; OpenAI Responses' response.completed
// ends with usage followed only by user and metadata, at most about 9 KiB).
const (
	WindowHead = 2 << 10
	WindowTail = 14 << 10
)

// Window keeps the first WindowHead and the last WindowTail bytes of a
// response in a fixed array, so that its token counts can be found when the
// body itself is not captured (capture: meta, a storage budget) or capture
// stopped at max_capture_bytes. Writing copies, never allocates.
type Window struct {
	buf [WindowHead + WindowTail]byte
	n   int64 // bytes written (a seeded head counts as full)
	rot int   // how far Parts has rotated the ring
	// seeded: Seed put headLen bytes in the head; what follows is not
	// contiguous with them (the bytes between were captured elsewhere).
	seeded  bool
	headLen int
}

var windowPool = sync.Pool{New: func() any { return new(Window) }}

// acquireWindow returns an empty window from the pool.
func acquireWindow() *Window {
	w := windowPool.Get().(*Window)
	w.n, w.rot, w.seeded, w.headLen = 0, 0, false, 0
	return w
}

// releaseWindow returns w to the pool.
func releaseWindow(w *Window) { windowPool.Put(w) }

// Seed starts w with head as the response's first bytes (at most
// WindowHead of them); later writes go to the tail only, as bytes that do
// not follow head directly.
func (w *Window) Seed(head []byte) {
	if len(head) == 0 {
		return
	}
	w.headLen = copy(w.buf[:WindowHead], head)
	w.n = WindowHead
	w.seeded = true
}

// pos is where the next byte goes in the ring.
func (w *Window) pos() int {
	return (int((w.n-WindowHead)%WindowTail) + WindowTail - w.rot) % WindowTail
}

// Write appends b to the response's bytes.
func (w *Window) Write(b []byte) {
	if w.n < WindowHead {
		k := copy(w.buf[w.n:WindowHead], b)
		w.n += int64(k)
		b = b[k:]
	}
	if len(b) == 0 {
		return
	}
	ring := w.buf[WindowHead:]
	if len(b) > len(ring) {
		w.n += int64(len(b) - len(ring))
		b = b[len(b)-len(ring):]
	}
	pos := w.pos()
	k := copy(ring[pos:], b)
	copy(ring, b[k:])
	w.n += int64(len(b))
}

// Len returns the number of bytes written.
func (w *Window) Len() int64 { return w.n }

// TailFollowsSeed reports whether the tail holds every byte written after
// a seeded head (capture stopped, Seed, and at most WindowTail bytes came
// after): it then begins where the captured bytes ended, and an event cut
// by the capture's end continues in it.
func (w *Window) TailFollowsSeed() bool {
	return w.seeded && w.n <= WindowHead+WindowTail
}

// Parts returns what the window holds in stream order. When the response
// fit (whole), head is all of it and tail is nil; otherwise head is its
// first WindowHead bytes and tail its last WindowTail, with a gap between.
// Parts puts the ring in order in place (no allocation); writing may go on
// afterwards.
func (w *Window) Parts() (head, tail []byte, whole bool) {
	if w.seeded && w.n <= WindowHead+WindowTail {
		return w.buf[:w.headLen], w.buf[WindowHead:w.n], false
	}
	if w.n <= WindowHead+WindowTail {
		return w.buf[:w.n], nil, true
	}
	ring := w.buf[WindowHead:]
	if pos := w.pos(); pos != 0 {
		// Rotate left by pos: the oldest byte first; the next write goes
		// to ring[0] again.
		slices.Reverse(ring[:pos])
		slices.Reverse(ring[pos:])
		slices.Reverse(ring)
		w.rot = (w.rot + pos) % WindowTail
	}
	headLen := WindowHead
	if w.seeded {
		headLen = w.headLen
	}
	return w.buf[:headLen], ring, false
}
