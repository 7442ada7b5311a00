//go:build race

package socket

import "syscall"

// Read reads from the socket fd into p. Under the race detector it is the
// ordinary system call, which tells the detector that a read follows the
// write that sent the bytes.
func Read(fd uintptr, p []byte) (int, syscall.Errno) {
	return errnoOf(syscall.Read(int(fd), p))
}

// Write writes p to the socket fd; under the race detector through the
// ordinary system call (see Read).
func Write(fd uintptr, p []byte) (int, syscall.Errno) {
	return errnoOf(syscall.Write(int(fd), p))
}

func errnoOf(n int, err error) (int, syscall.Errno) {
	if err != nil {
		errno, _ := err.(syscall.Errno)
		if errno == 0 {
			errno = syscall.EIO
		}
		return 0, errno
	}
	return n, 0
}

// Peek looks at the bytes waiting on the socket fd without taking them;
// under the race detector through the ordinary system call (see Read).
func Peek(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, err := syscall.Recvfrom(int(fd), p, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return errnoOf(n, err)
}
