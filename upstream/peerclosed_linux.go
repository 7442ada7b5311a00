package upstream

import (
	"syscall"
	"unsafe"
)

// Kernel TCP states (include/net/tcp_states.h).
const (
	tcpClose     = 7 // reset by the peer (or never connected)
	tcpCloseWait = 8 // the peer sent its FIN
)

// peerClosed reports whether the peer of the TCP socket fd has closed its
// sending side or reset the connection while bytes of its still wait
// unread (a TLS client's close_notify alert, typically): the state byte
// that opens struct tcp_info, as TCP_INFO copies as much of it as asked
// for. A reset is included: a client closing with response bytes unread in
// its socket sends a RST instead of a FIN, and the bytes it sent before
// stay readable here. No allocation, one system call.
func peerClosed(fd uintptr) bool {
	var info [8]byte
	n := uint32(len(info))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&n)), 0)
	return errno == 0 && n >= 1 && (info[0] == tcpCloseWait || info[0] == tcpClose)
}
