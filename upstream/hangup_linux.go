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
//
// A stream's upstream socket joins the set too when the stream is copied
// in the poller's callback (pollcopy.go), to learn of an upstream close the
// poller reported together with the bytes before it.
type hangups struct {
	epfd    int
	streams map[int32]*Stream // by client descriptor, armed streams only
	ups     map[int32]*Stream // by upstream descriptor, armed streams only
	seq     int32             // tells an arming from an earlier one of the same descriptor
	events  [128]syscall.EpollEvent
}

// watchesUpstreams: upstream sockets can join the set.
const watchesUpstreams = true

// newHangups opens the epoll set; nil when it cannot (the watchdog then
// peeks, as on other systems).
func newHangups() *hangups {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	return &hangups{epfd: fd, streams: map[int32]*Stream{}, ups: map[int32]*Stream{}}
}

// arm adds s's client socket to the set; false when it cannot be watched
// this way (no socket, or a failure), and the caller peeks instead.
func (h *hangups) arm(s *Stream) bool {
	rc := s.hupConn()
	if rc == nil {
		return false
	}
	fd, seq, ok := h.add(rc)
	if !ok {
		return false
	}
	if old := h.streams[fd]; old != nil {
		old.hupSeq = 0
	}
	h.streams[fd] = s
	s.hupFD, s.hupSeq = fd, seq
	return true
}

// armUpstream adds s's upstream socket to the set; false when it cannot.
func (h *hangups) armUpstream(s *Stream) bool {
	if s.up == nil || s.up.raw == nil {
		return false
	}
	fd, seq, ok := h.add(s.up.raw)
	if !ok {
		return false
	}
	if old := h.ups[fd]; old != nil {
		old.upSeq = 0
	}
	h.ups[fd] = s
	s.upFD, s.upSeq = fd, seq
	return true
}

// add puts the socket under rc into the epoll set, armed for a hang-up,
// and returns its descriptor and the arming's sequence number.
func (h *hangups) add(rc syscall.RawConn) (fd, seq int32, ok bool) {
	h.seq++
	if h.seq <= 0 {
		h.seq = 1
	}
	seq, fd = h.seq, -1
	errno := syscall.Errno(0)
	err := rc.Control(func(sysfd uintptr) {
		fd = int32(sysfd)
		ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP, Fd: fd, Pad: seq}
		errno = epollCtl(h.epfd, syscall.EPOLL_CTL_ADD, sysfd, &ev)
		if errno == syscall.EEXIST { // left behind by a stream whose removal failed
			errno = epollCtl(h.epfd, syscall.EPOLL_CTL_MOD, sysfd, &ev)
		}
	})
	return fd, seq, err == nil && errno == 0
}

// disarm removes s's sockets from the set, while the connections are
// still open (the stream's end, before fasthttp may close the client's
// and the stream closes or pools the upstream's).
func (h *hangups) disarm(s *Stream) {
	if s.hupSeq > 0 {
		if h.streams[s.hupFD] == s {
			delete(h.streams, s.hupFD)
		}
		h.remove(s.hupRC, s.hupFD)
		s.hupSeq = 0
	}
	if s.upSeq > 0 {
		if h.ups[s.upFD] == s {
			delete(h.ups, s.upFD)
		}
		if s.up != nil {
			h.remove(s.up.raw, s.upFD)
		}
		s.upSeq = 0
	}
}

// remove takes the socket under rc, if still descriptor fd, out of the set.
func (h *hangups) remove(rc syscall.RawConn, fd int32) {
	if rc == nil {
		return
	}
	_ = rc.Control(func(sysfd uintptr) {
		if int32(sysfd) == fd {
			epollCtl(h.epfd, syscall.EPOLL_CTL_DEL, sysfd, nil)
		}
	})
}

// poll calls gone for the armed streams whose client has left and ended
// for those whose upstream has, without waiting. A socket stays reported
// until its stream ends and removes it, and the kernel reports ready
// sockets in turn, so with more than one call returns, the rest come in
// the next ticks.
func (h *hangups) poll(gone, ended func(*Stream)) {
	if len(h.streams) == 0 && len(h.ups) == 0 {
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
			} else if s := h.ups[ev.Fd]; s != nil && s.upSeq == ev.Pad {
				ended(s)
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
