//go:build !race

package socket

import "syscall"

// spliceCall is splice(2) without the scheduler's system-call bookkeeping:
// with both ends non-blocking it never waits.
func spliceCall(out, in uintptr, n int) (int, syscall.Errno) {
	m, _, errno := syscall.RawSyscall6(syscall.SYS_SPLICE, in, 0, out, 0, uintptr(n), spliceFlags)
	if errno != 0 {
		return 0, errno
	}
	return int(m), 0
}
