package upstream

import (
	"net"
	"testing"
	"time"
)

// TestIdleSet drives an idle set of the test's own through real sockets:
// a stream waiting in it is woken once when its upstream sends a byte,
// once when it is cancelled (and not again by a later byte), and, when
// the set closes under it, woken too, after which no stream enters.
func TestIdleSet(t *testing.T) {
	var set idleSet
	set.open()
	if set.epfd < 0 {
		t.Fatal("no epoll set")
	}
	t.Cleanup(func() { _ = set.close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	woke := make(chan *Stream, 4)
	// stream returns a stream reading a fresh connection to ln, and the
	// connection's far end.
	stream := func() (*Stream, net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		far, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { far.Close() })
		rc, err := c.(*net.TCPConn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		s := &Stream{wake: func(s *Stream) { woke <- s }}
		s.rb.raw = rc
		return s, far
	}
	woken := func(want *Stream, why string) {
		t.Helper()
		select {
		case s := <-woke:
			if s != want {
				t.Fatalf("%s: another stream woke", why)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: the stream was never woken", why)
		}
		if s := want.idleState.Load(); s != notIdle {
			t.Fatalf("%s: woken stream's state %d, want notIdle", why, s)
		}
	}

	s, far := stream()
	if !set.wait(s) {
		t.Fatal("wait refused a plain TCP stream")
	}
	if n := set.len(); n != 1 {
		t.Fatalf("%d streams in the set, want 1", n)
	}
	if _, err := far.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	woken(s, "a byte")
	if n := set.len(); n != 0 {
		t.Fatalf("%d streams in the set after the wake, want 0", n)
	}

	s2, far2 := stream()
	if !set.wait(s2) {
		t.Fatal("wait refused the second stream")
	}
	set.cancel(s2)
	woken(s2, "cancel")
	if _, err := far2.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	// The armed socket's event finds no stream: no second wake.
	select {
	case <-woke:
		t.Fatal("a cancelled stream was woken again by a later byte")
	case <-time.After(200 * time.Millisecond):
	}

	s3, _ := stream()
	if !set.wait(s3) {
		t.Fatal("wait refused the third stream")
	}
	if err := set.close(); err != nil {
		t.Fatal(err)
	}
	woken(s3, "the set closed")
	if set.wait(s3) {
		t.Fatal("a closed set took a stream")
	}
	if n := set.len(); n != 0 {
		t.Fatalf("%d streams in the closed set, want 0", n)
	}
}
