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
	epfd   int
	sets   [2]map[int32]*Stream // by descriptor, armed streams only: [clientSide], [upstreamSide]
	seq    int32                // tells an arming from an earlier one of the same descriptor
	events [128]syscall.EpollEvent
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
	return &hangups{epfd: fd, sets: [2]map[int32]*Stream{{}, {}}}
}

// arm adds s's socket rc, its side's (clientSide or upstreamSide), to the
// set; false when it cannot be watched this way (no socket, or a failure).
func (h *hangups) arm(s *Stream, side int, rc syscall.RawConn) bool {
	if rc == nil {
		return false
	}
	fd, seq, ok := h.add(rc)
	if !ok {
		return false
	}
	set := h.sets[side]
	if old := set[fd]; old != nil {
		old.hupSock(side).seq = 0
	}
	set[fd] = s
	*s.hupSock(side) = hupSocket{fd: fd, seq: seq}
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
	h.drop(s, clientSide, s.hupRC)
	h.drop(s, upstreamSide, s.upRaw())
}

// drop removes s's socket rc of side from the set, if there.
func (h *hangups) drop(s *Stream, side int, rc syscall.RawConn) {
	sock := s.hupSock(side)
	if sock.seq <= 0 {
		return
	}
	if h.sets[side][sock.fd] == s {
		delete(h.sets[side], sock.fd)
	}
	h.remove(rc, sock.fd)
	sock.seq = 0
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
	if len(h.sets[clientSide]) == 0 && len(h.sets[upstreamSide]) == 0 {
		return
	}
	for range 4 {
		n, err := syscall.EpollWait(h.epfd, h.events[:], 0)
		if err == syscall.EINTR {
			continue
		}
		for _, ev := range h.events[:max(n, 0)] {
			if s := h.sets[clientSide][ev.Fd]; s != nil && s.hupClient.seq == ev.Pad {
				gone(s)
			} else if s := h.sets[upstreamSide][ev.Fd]; s != nil && s.hupUp.seq == ev.Pad {
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
