//go:build !linux

package upstream

import "syscall"

// hangups has no implementation here: the watchdog peeks at each silent
// stream's client socket instead (hangup_linux.go).
type hangups struct{}

func newHangups() *hangups                                          { return nil }
func (h *hangups) arm(s *Stream, side int, rc syscall.RawConn) bool { return false }
func (h *hangups) disarm(s *Stream)                                 {}
func (h *hangups) poll(gone, ended func(*Stream))                   {}
func (h *hangups) close()                                           {}

// watchesUpstreams: no upstream socket is watched here, so none is copied
// in the poller's callback (pollcopy.go).
const watchesUpstreams = false
