package socket

import "net"

// Under returns the first of c and the connections it wraps (a *tls.Conn's
// NetConn, the relay listener's connection wrapper: each NetConn, a few
// layers deep at most) that is a T: the TCP socket's own methods
// (CloseRead, SetLinger, SyscallConn) are not promoted through a wrapper
// that embeds a net.Conn.
func Under[T any](c net.Conn) (T, bool) {
	for range 4 {
		if c == nil {
			break
		}
		if t, ok := any(c).(T); ok {
			return t, true
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = w.NetConn()
	}
	var zero T
	return zero, false
}
