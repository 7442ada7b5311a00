package chlog

import (
	"unsafe"

	"github.com/ClickHouse/ch-go/proto"
)

// A block's growing buffers (the chunk bytes and their positions, copied
// request bodies, the header strings) used to grow inside Write, under the
// writer's lock: a new buffer a quarter larger, the bytes copied into it.
// A large allocation comes zeroed from pages nothing has touched yet (fresh
// from the system, or given back to it), so the copy faulted every page in,
// and on this project's machines a fault cost about 10 µs: growing the
// chunk bytes from 6 to 7.5 MiB held the lock for 22 ms, and every stream
// that ended meanwhile waited in Write before its response's end was
// flushed. Measured at 1,000 streams/s of 20 chunks (vegeta, 2 cores, the
// base config): the relay's latency p99 went from about 2 ms to 8-25 ms in
// the seconds its blocks grew.
//
// So the grower grows them ahead of need, on a goroutine of its own: once
// a buffer of at least growAheadMin bytes is three quarters full (and the
// block will need more room before it is cut: measure), Write wakes it; it
// sizes the buffers under the lock, allocates them half again
// as large and touches their pages unlocked, and under the lock again only
// copies the bytes already there (to pages in place: well under a
// millisecond a MiB), when the block is still the one it measured (not
// cut, nor recycled and current again). A row that comes before the grower
// is done grows its buffer in Write as before.

// growAheadMin is the smallest buffer the grower grows: below it, growth
// in Write costs less than waking the grower.
const growAheadMin = 256 << 10

// Growing byte buffers of a block, as growth indexes them.
const (
	growChunks = iota
	growBody
	growReqHeaders
	growRespHeaders
	growBuffers
)

// bytesToGrow returns b's growing byte buffers, indexed as growth has them.
func (b *block) bytesToGrow() [growBuffers]*[]byte {
	return [growBuffers]*[]byte{&b.chunkData.Buf, &b.reqBody.Buf, &b.reqHeaders.Buf, &b.respHeaders.Buf}
}

// crowded reports whether a buffer of c bytes (at least growAheadMin) of
// which l are taken is three quarters full.
func crowded(l, c int) bool { return c >= growAheadMin && l > c-c/4 }

// positionBytes is the size of one chunk position (two ints).
const positionBytes = int(unsafe.Sizeof(proto.Position{}))

// growth is what the grower makes for one block.
type growth struct {
	b    *block // the block measured
	gen  uint64 // b.gen then: b was not reset (and reused) since
	caps [growBuffers]int
	bufs [growBuffers][]byte
	npos int
	pos  []proto.Position
}

// measure sizes the crowded buffers of b half again as large, and reports
// whether any is to grow. A buffer whose room left holds what the block
// takes before batchBytes cut it is not grown (a block cut by size would
// carry the new room unused, charged to the budget), nor is any when the
// block's buffers would pass keep in all (it would not be kept for reuse:
// recycle). Write asks it after each row (no allocation), the grower
// before it grows. The caller holds the lock.
func (b *block) measure(batchBytes, keep int) (growth, bool) {
	g := growth{b: b, gen: b.gen}
	left := batchBytes - b.bytes
	if left <= 0 {
		return g, false
	}
	need, total := false, blockCap(b)
	for i, p := range b.bytesToGrow() {
		if l, c := len(*p), cap(*p); crowded(l, c) && c-l < left {
			g.caps[i] = c + c/2
			total += c / 2
			need = true
		}
	}
	if p := b.chunkData.Pos; crowded(positionBytes*len(p), positionBytes*cap(p)) {
		g.npos = cap(p) + cap(p)/2
		total += positionBytes * (cap(p) / 2)
		need = true
	}
	return g, need && total <= keep
}

// alloc makes the buffers g measured, their pages touched. It runs
// without the lock.
func (g *growth) alloc() {
	for i, c := range g.caps {
		if c > 0 {
			g.bufs[i] = prefault(make([]byte, c))[:0]
		}
	}
	if g.npos > 0 {
		g.pos = prefault(make([]proto.Position, g.npos))[:0]
	}
}

// pageSize is the granule prefault touches.
const pageSize = 4 << 10

// prefault writes an element on every page of s and returns it.
func prefault[T any](s []T) []T {
	var zero T
	step := max(1, pageSize/int(unsafe.Sizeof(zero)))
	for i := 0; i < len(s); i += step {
		s[i] = zero
	}
	return s
}

// adopt moves b's bytes into g's buffers where they are larger than b's
// own (a row may have grown one meanwhile). The caller holds the lock, and
// b is g.b.
func (b *block) adopt(g *growth) {
	for i, p := range b.bytesToGrow() {
		if nb := g.bufs[i]; cap(nb) > cap(*p) {
			*p = append(nb, *p...)
		}
	}
	if cap(g.pos) > cap(b.chunkData.Pos) {
		b.chunkData.Pos = append(g.pos, b.chunkData.Pos...)
	}
}

// wakeGrower asks the grower to grow the current block ahead of need. The
// caller holds the lock.
func (w *Writer) wakeGrower() {
	select {
	case w.growReq <- struct{}{}:
	default:
	}
}

// grower grows the current block's buffers when Write asks (wakeGrower)
// until the writer stops.
func (w *Writer) grower() {
	defer w.wg.Done()
	for {
		select {
		case <-w.stop:
			return
		case <-w.growReq:
		}
		w.mu.Lock()
		g, ok := w.cur.measure(w.o.BatchBytes, w.keep)
		w.mu.Unlock()
		if !ok {
			continue
		}
		g.alloc()
		w.mu.Lock()
		if !w.closed && w.cur == g.b && g.b.gen == g.gen {
			w.adoptWithin(&g)
		}
		w.mu.Unlock()
	}
}

// adoptWithin gives g's block the buffers g grew when the capacity they
// add fits under the budget's capture ceiling: room ahead of need must not
// take what is kept for rows. Otherwise they are dropped, and a row that
// needs the room grows its buffer in Write. (The new capacity was charged
// whatever the budget held: near the limit it took the budget past it;
// seen, 2.3 of 2 MiB.) The caller holds the lock.
func (w *Writer) adoptWithin(g *growth) {
	b := g.b
	var old [growBuffers][]byte
	for i, p := range b.bytesToGrow() {
		old[i] = *p
	}
	oldPos := b.chunkData.Pos
	before := blockMem(b)
	b.adopt(g)
	extra := int64(blockMem(b) - before)
	if extra > 0 && !w.budget.take(extra, w.budget.ceiling) {
		for i, p := range b.bytesToGrow() {
			*p = old[i] // the bytes are as they were: adopt only copied them
		}
		b.chunkData.Pos = oldPos
		return
	}
	w.grown.Add(1)
	w.budget.move(max(extra, 0), int64(b.charge())) // the new capacity, taken above
}
