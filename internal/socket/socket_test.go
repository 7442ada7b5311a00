package socket

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns a connected loopback pair: the wrapped accepted side and a
// plain dialed peer.
func pair(t *testing.T) (*Conn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Listener{ln}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := c.(*Conn)
	if !ok {
		t.Fatalf("Listener.Accept returned %T, want *socket.Conn", c)
	}
	t.Cleanup(func() { sc.Close(); peer.Close() })
	return sc, peer.(*net.TCPConn)
}

// pattern is n bytes that differ from offset to offset.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// A large write fills the socket many times over (a small send buffer, a
// reader that starts late): Write must wait and go on where it stopped, and
// every byte must arrive once and in order.
func TestWriteWaitsForRoomAndSendsAll(t *testing.T) {
	c, peer := pair(t)
	_ = c.SetWriteBuffer(16 << 10)
	want := pattern(1 << 20)
	got := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		p := make([]byte, 64<<10)
		time.Sleep(200 * time.Millisecond) // the write fills the socket first
		for {
			n, err := peer.Read(p)
			buf.Write(p[:n])
			if err != nil {
				got <- buf.Bytes()
				return
			}
		}
	}()
	n, err := c.Write(want)
	if err != nil || n != len(want) {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(want))
	}
	_ = c.CloseWrite()
	select {
	case b := <-got:
		if sha256.Sum256(b) != sha256.Sum256(want) {
			t.Fatalf("peer received %d bytes that differ from the %d written", len(b), len(want))
		}
	case <-time.After(60 * time.Second):
		t.Fatal("peer did not receive the whole write")
	}
}

// Read returns what has arrived, waits when nothing has, and ends with
// io.EOF when the peer closes.
func TestReadReturnsArrivedBytesThenEOF(t *testing.T) {
	c, peer := pair(t)
	want := pattern(1 << 20)
	go func() {
		for off := 0; off < len(want); off += 100 << 10 {
			_, _ = peer.Write(want[off:min(off+100<<10, len(want))])
			time.Sleep(time.Millisecond)
		}
		_ = peer.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes that differ from the %d sent", len(got), len(want))
	}
	n, err := c.Read(make([]byte, 10))
	if n != 0 || err != io.EOF {
		t.Fatalf("Read after the end = %d, %v; want 0, io.EOF", n, err)
	}
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
}

// Deadlines hold as on any net.Conn: an expired read or write returns a
// timeout error that is os.ErrDeadlineExceeded, and a write says how much it
// sent before.
func TestDeadlines(t *testing.T) {
	c, peer := pair(t)
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := c.Read(make([]byte, 10))
	var te interface{ Timeout() bool }
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &te) || !te.Timeout() {
		t.Fatalf("Read past its deadline = %d, %v; want 0 and a timeout", n, err)
	}

	_ = c.SetWriteBuffer(4 << 10)
	_ = peer.SetReadBuffer(4 << 10)
	big := pattern(64 << 20) // more than both sockets hold: the peer never reads
	_ = c.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err = c.Write(big)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write past its deadline: err = %v; want os.ErrDeadlineExceeded", err)
	}
	if n <= 0 || n >= len(big) {
		t.Fatalf("Write past its deadline sent %d of %d bytes; want some, not all", n, len(big))
	}
}

// A reset by the peer is ECONNRESET wrapped as net.Conn reports it.
func TestReadReset(t *testing.T) {
	c, peer := pair(t)
	_ = peer.SetLinger(0)
	_ = peer.Close()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := c.Read(make([]byte, 10))
	var oe *net.OpError
	if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("Read after a reset: %v; want a read *net.OpError of ECONNRESET", err)
	}
	// Writing into a reset connection fails too (EPIPE or ECONNRESET).
	_, err = c.Write([]byte("x"))
	if err == nil {
		_, err = c.Write([]byte("x"))
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Write after a reset: %v; want EPIPE or ECONNRESET", err)
	}
}

// A read and a write may run at the same time (a WebSocket tunnel does):
// both directions carry their bytes whole.
func TestReadAndWriteAtOnce(t *testing.T) {
	c, peer := pair(t)
	out, in := pattern(4<<20), pattern(3<<20)
	var wg sync.WaitGroup
	var fromPeer, fromC []byte
	var errs [4]error
	wg.Add(4)
	go func() { defer wg.Done(); _, errs[0] = c.Write(out); _ = c.CloseWrite() }()
	go func() { defer wg.Done(); fromPeer, errs[1] = io.ReadAll(c) }()
	go func() { defer wg.Done(); _, errs[2] = peer.Write(in); _ = peer.CloseWrite() }()
	go func() { defer wg.Done(); fromC, errs[3] = io.ReadAll(peer) }()
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("goroutine %d: %v", i, err)
		}
	}
	if !bytes.Equal(fromPeer, in) || !bytes.Equal(fromC, out) {
		t.Fatalf("full duplex: got %d and %d bytes, want %d and %d, equal", len(fromPeer), len(fromC), len(in), len(out))
	}
}

// Wrap leaves what is no TCP connection as it is, and a wrapped connection
// still shows its socket (syscall.Conn), which the watchdog peeks at.
func TestWrap(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if Wrap(a) != a {
		t.Fatal("Wrap changed a net.Pipe")
	}
	c, _ := pair(t)
	if Wrap(c) != net.Conn(c) {
		t.Fatal("Wrap wrapped a *socket.Conn again")
	}
	if _, ok := net.Conn(c).(syscall.Conn); !ok {
		t.Fatal("*socket.Conn hides its socket: no SyscallConn")
	}
}
