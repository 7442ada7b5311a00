package upstream

import (
	"net"
	"syscall"
	"unsafe"
)

// unsentBytes returns how many bytes written to the socket under c have
// not been taken by its peer yet (SIOCOUTQ: unsent and unacknowledged).
func unsentBytes(c net.Conn) (int64, bool) {
	sc := socketOf(c)
	if sc == nil {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n int32
	var errno syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCOUTQ, uintptr(unsafe.Pointer(&n)))
	}); err != nil || errno != 0 {
		return 0, false
	}
	return int64(n), true
}
