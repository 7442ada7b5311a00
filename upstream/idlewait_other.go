//go:build !linux

package upstream

// idleWait has no set here: quiet streams wait in place.
func (s *Stream) idleWait() bool { return false }

func (s *Stream) cancelIdle() {}
