package socket

import (
	"runtime"
	"testing"
	"time"
)

// TestPeerClosed: a connection whose peer is open reads as open, and as
// closed once the peer's FIN is in (Linux: TCP_INFO; elsewhere never).
func TestPeerClosed(t *testing.T) {
	c, peer := pair(t)
	if c.PeerClosed() {
		t.Fatal("open peer read as closed")
	}
	if runtime.GOOS != "linux" {
		t.Skip("TCP_INFO is Linux's")
	}
	if err := peer.Close(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !c.PeerClosed(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the peer's close never read")
		}
	}
}
