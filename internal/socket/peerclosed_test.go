package socket

import (
	"runtime"
	"testing"
	"time"
)

// TestPeerState: a connection whose peer is open reads as open; one whose
// peer closed its sending side (a half-close, or a whole close before any
// byte was sent to it) as FIN; one whose peer reset it as reset (Linux:
// TCP_INFO; elsewhere always open).
func TestPeerState(t *testing.T) {
	c, peer := pair(t)
	if st, _ := c.PeerState(); st != PeerOpen {
		t.Fatalf("open peer read as %d", st)
	}
	if runtime.GOOS != "linux" {
		t.Skip("TCP_INFO is Linux's")
	}
	if err := peer.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, PeerFIN)
	if err := peer.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := peer.Close(); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, PeerReset)
}

func waitState(t *testing.T, c *Conn, want PeerState) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		st, rtt := c.PeerState()
		if st == want {
			if rtt <= 0 || rtt > 10*time.Second {
				t.Errorf("round-trip time %v", rtt)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("state %d, want %d", st, want)
		}
	}
}
