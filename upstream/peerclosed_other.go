//go:build !linux

package upstream

// peerClosed reports whether the peer of socket fd has closed its sending
// side while bytes of its wait unread; only Linux is asked (TCP_INFO).
// Elsewhere such a client is noticed at the next write.
func peerClosed(fd uintptr) bool { return false }
