package usage

// seamKeep bounds the bytes a seam keeps of the reads before.
const seamKeep = 64

// seam keeps the last bytes a scanner has read, so that a marker split
// between two reads is still found: it is looked for in the kept bytes
// joined to the head of the next read, as well as in that read.
type seam struct {
	tail [seamKeep]byte
	n    int
}

// join returns the kept bytes joined to the head of b, in buf (nil when
// none are kept), and how many bytes of b it holds. A scanner looks for its
// marker there, and in b alone unless the join held all of it (a marker in
// b stands in the join too); when neither has one, it calls keepLast. The
// buffer is the caller's, on its stack: a join held by the seam would grow
// every scanner, one handed to a function value would escape to the heap.
func (s *seam) join(buf *[2 * seamKeep]byte, b []byte) (joined []byte, covered int) {
	if s.n == 0 {
		return nil, 0
	}
	n := copy(buf[:], s.tail[:s.n])
	n += copy(buf[n:], b)
	return buf[:n], n - s.n
}

// keepLast keeps the last keep bytes of what is kept and b.
func (s *seam) keepLast(b []byte, keep int) {
	if len(b) >= keep {
		s.n = copy(s.tail[:], b[len(b)-keep:])
		return
	}
	if drop := s.n + len(b) - keep; drop > 0 {
		s.n = copy(s.tail[:], s.tail[drop:s.n])
	}
	s.n += copy(s.tail[s.n:], b)
}
