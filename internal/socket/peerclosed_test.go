package socket

import (
	"runtime"
	"testing"
	"time"
)

// TestPeerReset: a connection whose peer is open, or closed its sending
// side only (a half-close: it may still read), reads as not reset; one
// whose peer reset it (Linux: TCP_INFO; elsewhere never) as reset.
func TestPeerReset(t *testing.T) {
	c, peer := pair(t)
	if c.PeerReset() {
		t.Fatal("open peer read as reset")
	}
	if runtime.GOOS != "linux" {
		t.Skip("TCP_INFO is Linux's")
	}
	if err := peer.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if n, err := c.Read(make([]byte, 1)); n == 0 && err != nil {
			break // the FIN is in
		}
		if time.Now().After(deadline) {
			t.Fatal("the peer's FIN never read")
		}
	}
	if c.PeerReset() {
		t.Fatal("a half-closed peer read as reset")
	}
	if err := peer.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	if err := peer.Close(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); !c.PeerReset(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the peer's reset never read")
		}
	}
}
