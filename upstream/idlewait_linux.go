package upstream

import (
	"os"
	"sync"
	"syscall"
)

// idleSet is the epoll set of quiet streams' upstream sockets (see
// idlewait.go), each armed once (EPOLLONESHOT) for bytes, a hang-up or an
// error, level-triggered: bytes that came before the arming are reported
// at once. Go's poller has the same sockets in its own set; an event here
// consumes nothing there.
type idleSet struct {
	epfd    int      // -1: no set (the streams wait in place)
	file    *os.File // epfd's, for close
	mu      sync.Mutex
	streams map[int32]*Stream // by upstream descriptor, armed only
	seq     int32
}

// idle is the process's set, opened with its goroutine at start: a
// goroutine started with the first stream that waits would outlive the
// test or server that started it.
var idle idleSet

func init() { idle.open() }

func (t *idleSet) open() {
	t.epfd = -1
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return
	}
	// The set's own descriptor waits in Go's poller (an epoll set is
	// readable while it has events): its goroutine then parks as any
	// other, where a blocking epoll_wait would hold a thread and have the
	// runtime hand its processor around at every wake-up.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return
	}
	f := os.NewFile(uintptr(fd), "upstream-idle-set")
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return
	}
	t.epfd, t.file, t.streams = fd, f, map[int32]*Stream{}
	go t.run(rc)
}

// close closes the set, which ends its goroutine as a failed wait does
// (fail): its streams are woken and wait in place from then on. The
// process's set is never closed; tests close theirs.
func (t *idleSet) close() error {
	t.mu.Lock()
	t.epfd = -1 // no stream enters from now on
	t.mu.Unlock()
	return t.file.Close()
}

// idleWait puts s into the idle set; false when it cannot (then nothing
// changed and s waits in place). From a true return s is the set's until
// it is woken, by the set or by abort.
func (s *Stream) idleWait() bool { return idle.wait(s) }

// wait is idleWait in the set t.
func (t *idleSet) wait(s *Stream) bool {
	if s.rb.raw == nil {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.epfd < 0 {
		return false
	}
	t.seq++
	if t.seq <= 0 {
		t.seq = 1
	}
	seq := t.seq
	var fd int32 = -1
	errno := syscall.Errno(0)
	s.idleSeq = seq
	s.idleState.Store(inIdleSet)
	err := s.rb.raw.Control(func(sysfd uintptr) {
		fd = int32(sysfd)
		s.idleFD = fd
		t.streams[fd] = s // before arming: the event may come at once
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: fd, Pad: seq}
		errno = epollCtl(t.epfd, syscall.EPOLL_CTL_MOD, sysfd, &ev)
		if errno == syscall.ENOENT {
			errno = epollCtl(t.epfd, syscall.EPOLL_CTL_ADD, sysfd, &ev)
		}
	})
	if err != nil || errno != 0 {
		if fd >= 0 && t.streams[fd] == s {
			delete(t.streams, fd)
		}
		s.idleState.Store(notIdle)
		return false
	}
	idleWaits.Add(1)
	return true
}

// cancelIdle wakes s if it waits in the set: abort shut its upstream
// socket down, and does not count on the set's seeing that.
func (s *Stream) cancelIdle() { idle.cancel(s) }

// cancel is cancelIdle in the set t.
func (t *idleSet) cancel(s *Stream) {
	if s.idleState.Load() != inIdleSet {
		return
	}
	t.mu.Lock()
	if t.streams[s.idleFD] == s {
		delete(t.streams, s.idleFD)
	}
	t.mu.Unlock()
	s.resumeIdle()
}

// len returns how many streams the set holds.
func (t *idleSet) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.streams)
}

// fail closes the set to new streams and wakes those in it, which then
// wait in place: epoll_wait failed (which it does only when misused) or
// the set was closed.
func (t *idleSet) fail() {
	t.mu.Lock()
	t.epfd = -1
	streams := t.streams
	t.streams = map[int32]*Stream{}
	t.mu.Unlock()
	for _, s := range streams {
		s.resumeIdle()
	}
}

// run waits for the set's events and wakes their streams.
func (t *idleSet) run(rc syscall.RawConn) {
	var events [128]syscall.EpollEvent
	woken := make([]*Stream, 0, len(events))
	n := 0
	var werr error
	poll := func(fd uintptr) bool {
		n, werr = syscall.EpollWait(int(fd), events[:], 0)
		return werr != syscall.EINTR && (n > 0 || werr != nil)
	}
	for {
		if err := rc.Read(poll); err != nil || werr != nil {
			t.fail()
			return
		}
		t.mu.Lock()
		for _, ev := range events[:n] {
			if s := t.streams[ev.Fd]; s != nil && s.idleSeq == ev.Pad {
				delete(t.streams, ev.Fd)
				woken = append(woken, s)
			}
		}
		t.mu.Unlock()
		for i, s := range woken {
			s.resumeIdle()
			woken[i] = nil
		}
		woken = woken[:0]
	}
}
