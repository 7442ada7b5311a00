package upstream

import (
	"syscall"
)

// hangups is the watchdog's own epoll set of client sockets, each armed
// for a hang-up (EPOLLRDHUP: the client's FIN; a reset or error is always
// reported). It replaces peeking at every silent stream's client socket on
// every check: a socket is added once, when its stream first falls silent,
// and removed when the stream ends, and one epoll_wait per tick returns
// only the clients that left. Nginx learns of a leaving client the same
// way, from its event loop, at no cost per idle connection.
//
// The set is the watchdog's alone: Go's poller has the same sockets in its
// own epoll set, and an event here consumes nothing there. Everything runs
// under the watchdog's mutex.
type hangups struct {
	epfd    int
	streams map[int32]*Stream // by client descriptor, armed streams only
	seq     int32             // tells an arming from an earlier one of the same descriptor
	events  [128]syscall.EpollEvent
}

// newHangups opens the epoll set; nil when it cannot (the watchdog then
// peeks, as on other systems).
func newHangups() *hangups {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	return &hangups{epfd: fd, streams: map[int32]*Stream{}}
}

// arm adds s's client socket to the set; false when it cannot be watched
// this way (no socket, or a failure), and the caller peeks instead.
func (h *hangups) arm(s *Stream) bool {
	rc := s.hupConn()
	if rc == nil {
		return false
	}
	h.seq++
	if h.seq <= 0 {
		h.seq = 1
	}
	seq, fd, errno := h.seq, int32(-1), syscall.Errno(0)
	err := rc.Control(func(sysfd uintptr) {
		fd = int32(sysfd)
		ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP, Fd: fd, Pad: seq}
		errno = epollCtl(h.epfd, syscall.EPOLL_CTL_ADD, sysfd, &ev)
		if errno == syscall.EEXIST { // left behind by a stream whose removal failed
			errno = epollCtl(h.epfd, syscall.EPOLL_CTL_MOD, sysfd, &ev)
		}
	})
	if err != nil || errno != 0 {
		return false
	}
	if old := h.streams[fd]; old != nil {
		old.hupSeq = 0
	}
	h.streams[fd] = s
	s.hupFD, s.hupSeq = fd, seq
	return true
}

// disarm removes s's client socket from the set, while the connection is
// still open (the stream's end, before fasthttp may close it).
func (h *hangups) disarm(s *Stream) {
	if s.hupSeq == 0 {
		return
	}
	if h.streams[s.hupFD] == s {
		delete(h.streams, s.hupFD)
	}
	_ = s.hupRC.Control(func(sysfd uintptr) {
		if int32(sysfd) == s.hupFD {
			epollCtl(h.epfd, syscall.EPOLL_CTL_DEL, sysfd, nil)
		}
	})
	s.hupSeq = 0
}

// poll calls gone for the armed streams whose client has left, without
// waiting. A socket stays reported until its stream ends and removes it,
// and the kernel reports ready sockets in turn, so with more gone clients
// than one call returns, the rest come in the next ticks.
func (h *hangups) poll(gone func(*Stream)) {
	if len(h.streams) == 0 {
		return
	}
	for range 4 {
		n, err := syscall.EpollWait(h.epfd, h.events[:], 0)
		if err == syscall.EINTR {
			continue
		}
		for _, ev := range h.events[:max(n, 0)] {
			if s := h.streams[ev.Fd]; s != nil && s.hupSeq == ev.Pad {
				gone(s)
			}
		}
		if n < len(h.events) {
			return
		}
	}
}

// close releases the epoll set.
func (h *hangups) close() { syscall.Close(h.epfd) }

func epollCtl(epfd, op int, fd uintptr, ev *syscall.EpollEvent) syscall.Errno {
	if err := syscall.EpollCtl(epfd, op, int(fd), ev); err != nil {
		return err.(syscall.Errno)
	}
	return 0
}
