//go:build !race

package socket

import (
	"syscall"
	"unsafe"
)

// Read reads from the non-blocking socket fd into p with a raw system call.
// It returns the bytes read (0 at the end of the stream) or the errno.
func Read(fd uintptr, p []byte) (int, syscall.Errno) { return rawIO(syscall.SYS_READ, fd, p) }

// Write writes p to the non-blocking socket fd with a raw system call. It
// returns the bytes written, perhaps fewer than len(p), or the errno.
func Write(fd uintptr, p []byte) (int, syscall.Errno) { return rawIO(syscall.SYS_WRITE, fd, p) }

// rawIO is read(2) or write(2) of p on fd, without the scheduler's
// system-call bookkeeping.
func rawIO(trap, fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}

// Peek looks at the first bytes waiting on the socket fd (recv with
// MSG_PEEK|MSG_DONTWAIT) without taking them, with a raw system call: the
// bytes seen (0 at the end of the stream) or the errno (EAGAIN: none).
func Peek(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}
