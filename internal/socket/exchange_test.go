package socket

import (
	"bytes"
	"errors"
	"io"
	"syscall"
	"testing"
	"time"
)

// answerAfter reads want bytes from peer, then (after pause) writes
// answer: a peer that answers a request only once it has all of it.
func answerAfter(t *testing.T, peer io.ReadWriter, want int, pause time.Duration, answer []byte) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		got := make([]byte, want)
		if _, err := io.ReadFull(peer, got); err != nil {
			done <- err
			return
		}
		time.Sleep(pause)
		_, err := peer.Write(answer)
		done <- err
	}()
	return done
}

// TestWriteThenReadWaitsWithoutTrying: the request goes out, the answer
// comes back whole, and no read found the socket empty on the way (the
// read after a Write would: the peer answers 50 ms later).
func TestWriteThenReadWaitsWithoutTrying(t *testing.T) {
	c, peer := pair(t)
	req, answer := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	for i := 0; i < 3; i++ {
		done := answerAfter(t, peer, len(req), 50*time.Millisecond, answer)
		before := emptyReads.Load()
		p := make([]byte, 256)
		n, err := c.WriteThenRead(req, p)
		if err != nil || !bytes.Equal(p[:n], answer) {
			t.Fatalf("read %q, %v; want %q", p[:n], err, answer)
		}
		if empty := emptyReads.Load() - before; empty != 0 {
			t.Errorf("exchange %d: %d reads found nothing, want 0", i, empty)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestWriteThenReadFullSocket: a request larger than the socket takes at
// once (a peer that reads it slowly) is finished by Write, and the answer
// is still read.
func TestWriteThenReadFullSocket(t *testing.T) {
	c, peer := pair(t)
	_ = c.SetWriteBuffer(16 << 10)
	req, answer := pattern(4<<20), []byte("done")
	done := answerAfter(t, slowReader{peer}, len(req), 0, answer)
	p := make([]byte, 16)
	n, err := c.WriteThenRead(req, p)
	if err != nil || string(p[:n]) != "done" {
		t.Fatalf("read %q, %v; want done", p[:n], err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// slowReader reads in small pieces, with a pause before the first.
type slowReader struct{ io.ReadWriter }

func (s slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return s.ReadWriter.Read(p[:min(len(p), 64<<10)])
}

// TestWriteThenReadPeerGone: a peer that closed its end answers with a
// reset or the end of the stream, which WriteThenRead returns as Read and
// Write would.
func TestWriteThenReadPeerGone(t *testing.T) {
	c, peer := pair(t)
	_ = peer.SetLinger(0)
	peer.Close()
	var err error
	for i := 0; i < 3 && err == nil; i++ { // the first write may still be taken
		_, err = c.WriteThenRead([]byte("GET / HTTP/1.1\r\n\r\n"), make([]byte, 64))
	}
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) && err != io.EOF {
		t.Fatalf("got %v, want ECONNRESET, EPIPE or EOF", err)
	}
}
