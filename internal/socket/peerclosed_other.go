//go:build !linux

package socket

import "time"

// PeerClosedFD reports whether the peer of socket fd has closed its sending
// side while bytes of its wait unread; only Linux is asked (TCP_INFO).
// Elsewhere such a client is noticed at the next write.
func PeerClosedFD(fd uintptr) bool { return false }

// PeerStateFD returns what the peer of socket fd did to the connection;
// only Linux is asked (TCP_INFO): elsewhere it reads open.
func PeerStateFD(fd uintptr) (PeerState, time.Duration) { return PeerOpen, 0 }
