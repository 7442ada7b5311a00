package chlog

import (
	"sync"
	"time"
)

// sendQueue holds cut blocks waiting for the sender, oldest first. In a
// burst (Write cutting blocks faster than one insert a block goes) they
// wait here, in memory, and the sender takes all that wait as one insert,
// instead of each going through the spool and back (encoded, written,
// fsync'd, read, verified and sent again: bench/chinsert measured that
// detour at ~0.7 x clickhouse-client's rows/s, and sending the same
// blocks from memory at ~1.05 x).
//
// Two bounds keep the default durability's promise and the memory: the
// queue holds at most maxBytes of rows (past it, cut blocks go to the
// spooler as before), and a block that waited a flush interval is taken
// by the spooler (spoolAged), so a crash loses what the sender had in hand
// and at most about one flush interval of blocks, as before.
type sendQueue struct {
	mu       sync.Mutex
	blocks   []*block    // blocks[head:] wait
	cutAt    []time.Time // when each block was queued
	head     int
	bytes    int // rows' bytes of the blocks queued
	maxBytes int
	ready    chan struct{} // signalled when a block is queued
}

func newSendQueue(maxBytes int) *sendQueue {
	return &sendQueue{maxBytes: maxBytes, ready: make(chan struct{}, 1)}
}

// sendQueueBytes is how many bytes of rows may wait for the sender: a
// quarter of the memory budget, at least two batches. The blocks stay
// charged to the budget while they wait, so a slow server makes new rows
// meta-only (and then refuses requests) no sooner than before: capture's
// ceiling lies well above a quarter of the budget.
func sendQueueBytes(o *Options) int {
	return max(2*o.BatchBytes, int(o.MaxBufferBytes/4))
}

// push queues b unless that would take the queue past maxBytes (an empty
// queue takes any block). It reports whether b was queued.
func (q *sendQueue) push(b *block, now time.Time) bool {
	q.mu.Lock()
	if q.head < len(q.blocks) && q.bytes+b.bytes > q.maxBytes {
		q.mu.Unlock()
		return false
	}
	q.blocks = append(q.blocks, b)
	q.cutAt = append(q.cutAt, now)
	q.bytes += b.bytes
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest block, or nil.
func (q *sendQueue) pop() *block {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.popLocked()
}

func (q *sendQueue) popLocked() *block {
	if q.head == len(q.blocks) {
		return nil
	}
	b := q.blocks[q.head]
	q.blocks[q.head] = nil
	q.head++
	q.bytes -= b.bytes
	switch {
	case q.head == len(q.blocks):
		// Empty: start again at the front, keeping the arrays.
		q.blocks, q.cutAt, q.head = q.blocks[:0], q.cutAt[:0], 0
	case q.head >= compactAfter && q.head >= len(q.blocks)/2:
		// A queue that never empties (a server slower than the inflow)
		// would otherwise grow its arrays by every block ever pushed:
		// move what waits to the front.
		n := copy(q.blocks, q.blocks[q.head:])
		copy(q.cutAt, q.cutAt[q.head:])
		clear(q.blocks[n:])
		q.blocks, q.cutAt, q.head = q.blocks[:n], q.cutAt[:n], 0
	}
	return b
}

// compactAfter is how many popped blocks a queue that is not empty may
// keep at the front of its arrays before it moves the waiting ones down.
const compactAfter = 64

// popAged takes the oldest block when it was queued before cutoff, or nil.
func (q *sendQueue) popAged(cutoff time.Time) *block {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.blocks) || q.cutAt[q.head].After(cutoff) {
		return nil
	}
	return q.popLocked()
}

// len is how many blocks wait.
func (q *sendQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.blocks) - q.head
}
