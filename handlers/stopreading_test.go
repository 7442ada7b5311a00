package handlers

import (
	"io"
	"net"
	"testing"
	"time"
)

// wrappedConn is a connection under a wrapper that embeds it, as app's
// edgeConn does: the socket's CloseRead is reachable only through NetConn.
type wrappedConn struct{ net.Conn }

func (w wrappedConn) NetConn() net.Conn { return w.Conn }

// TestStopReadingOutlastsDeadline: a connection the drain's sweep stopped
// reads its end even when the server sets a read deadline of its own after
// the sweep (as ServeConn does when it begins to wait for a request): the
// socket's reading side is shut, through the wrapper. A deadline in the
// past alone was replaced so, and the connection waited out read_timeout.
func TestStopReadingOutlastsDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	c := wrappedConn{server}
	stopReading(c)
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second)) // the server's own, after the sweep
	done := make(chan error, 1)
	go func() {
		var b [1]byte
		_, err := c.Read(b[:])
		done <- err
	}()
	select {
	case err := <-done:
		if err != io.EOF {
			t.Fatalf("read after the sweep: %v, want EOF", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the swept connection still waits for a request (its reading side was not shut)")
	}
}
