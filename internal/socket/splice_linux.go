package socket

import (
	"runtime"
	"syscall"
)

// Pipe is a kernel pipe for splice(2): bytes spliced from one socket into
// it can be spliced out to another without ever being copied into the
// process. Both ends are non-blocking. A Pipe that is no longer referenced
// closes its descriptors itself.
type Pipe struct {
	R, W    uintptr // the read and write ends
	Size    int     // what the pipe holds at most, in bytes
	cleanup runtime.Cleanup
}

// PipeBytes is the capacity NewPipe asks for: one system call moves up to
// this much. The kernel may grant less (pipe-user-pages-soft).
const PipeBytes = 256 << 10

// NewPipe opens a pipe of about PipeBytes.
func NewPipe() (*Pipe, error) {
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		return nil, err
	}
	p := &Pipe{R: uintptr(fds[0]), W: uintptr(fds[1]), Size: 64 << 10}
	if n, err := fcntl(fds[0], syscall.F_SETPIPE_SZ, PipeBytes); err == nil && n > 0 {
		p.Size = n
	} else if n, err := fcntl(fds[0], syscall.F_GETPIPE_SZ, 0); err == nil && n > 0 {
		p.Size = n
	}
	p.cleanup = runtime.AddCleanup(p, closePipe, fds)
	return p, nil
}

// Close closes the pipe now; p must not be used after.
func (p *Pipe) Close() {
	p.cleanup.Stop()
	closePipe([2]int{int(p.R), int(p.W)})
}

func closePipe(fds [2]int) {
	syscall.Close(fds[0])
	syscall.Close(fds[1])
}

func fcntl(fd, cmd, arg int) (int, error) {
	n, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(arg))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// spliceFlags: move pages rather than copy them where the kernel can, and
// never wait (both ends are non-blocking; the caller waits in the poller).
const spliceFlags = 0x1 | 0x2 // SPLICE_F_MOVE | SPLICE_F_NONBLOCK

// Splice moves up to n bytes from the descriptor in to out, one of which
// is a pipe, without waiting. It returns the bytes moved (0: in is a
// socket at the end of its stream) or the errno; EAGAIN when in has
// nothing or out has no room.
func Splice(out, in uintptr, n int) (int, syscall.Errno) {
	if n <= 0 {
		return 0, 0
	}
	return spliceCall(out, in, n)
}
