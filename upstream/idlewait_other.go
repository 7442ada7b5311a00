//go:build !linux

package upstream

// idleWait has no set here: quiet streams wait in place.
func (s *Stream) idleWait() bool { return false }

func (s *Stream) cancelIdle() {}

// idleSet is empty here: no stream ever waits in it.
type idleSet struct{}

var idle idleSet

func (idleSet) len() int { return 0 }
