package chlog

import "sync"

// segments keeps the buffers that gathered blocks were encoded into
// (send.go, gather) for the next insert that gathers: a burst gathers
// insert after insert, and a fresh buffer per block is memory the kernel
// zeroes and the GC sweeps again for every block. What is kept is bounded
// by max bytes of capacity (the most one insert gathers), each buffer by
// the writer's keep size; the writer lets go of them all when idle, with
// its other kept buffers.
type segments struct {
	mu    sync.Mutex
	free  [][]byte
	bytes int // capacity kept in free
	max   int // most capacity kept
	each  int // largest buffer kept
}

// take returns an empty buffer for about n bytes.
func (s *segments) take(n int) []byte {
	s.mu.Lock()
	if k := len(s.free); k > 0 {
		b := s.free[k-1]
		s.free[k-1] = nil
		s.free = s.free[:k-1]
		s.bytes -= cap(b)
		s.mu.Unlock()
		if cap(b) >= n {
			return b[:0]
		}
	} else {
		s.mu.Unlock()
	}
	return make([]byte, 0, n+n/8+64<<10)
}

// give keeps b for reuse, unless that goes past the bounds.
func (s *segments) give(b []byte) {
	if cap(b) == 0 || cap(b) > s.each {
		return
	}
	s.mu.Lock()
	if s.bytes+cap(b) <= s.max {
		s.free = append(s.free, b[:0])
		s.bytes += cap(b)
	}
	s.mu.Unlock()
}

// drop lets go of every kept buffer.
func (s *segments) drop() {
	s.mu.Lock()
	clear(s.free)
	s.free, s.bytes = s.free[:0], 0
	s.mu.Unlock()
}
