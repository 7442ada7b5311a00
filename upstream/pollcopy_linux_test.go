package upstream

import (
	"bytes"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// sendLastWithFIN has c send p and its FIN in one segment (corked), which
// the far end's poller reports as one readiness.
func sendLastWithFIN(t *testing.T, c net.Conn, p string) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_CORK, 1) })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, p); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
}

// TestUntilCloseBodyEndsWithLastBytes: a body that ends when the upstream
// closes, its last bytes and FIN in one segment, ends at once, without a
// watchdog: such a body is not copied in the poller's callback, whose wait
// after the short read of those bytes would never end.
func TestUntilCloseBodyEndsWithLastBytes(t *testing.T) {
	h, done := startUntilClose(t, record.KindSSE)
	time.Sleep(50 * time.Millisecond) // the copy waits for more
	sendLastWithFIN(t, h.up, "data: 2\n\n")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the body ended with %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the body's end still not seen 30 s after the upstream closed")
	}
	if got := string(h.s.rec.Chunks.Data); got != "data: 1\n\ndata: 2\n\n" {
		t.Errorf("captured %q", got)
	}
	h.s.rb.release()
}

// TestPollCopyUpstreamCloseWithLastBytes: the upstream's last bytes and its
// FIN arrive in one segment (corked), so the poller reports them as one
// readiness: the copy reads the bytes with a short read and waits, and no
// readiness comes for the FIN. The watchdog must find the closed socket
// and wake the wait, and the stream end cut (upstream_reset), long before
// its idle timeout (ten minutes here: a wait nobody wakes fails the test).
// A stream that is merely quiet, its socket open, is left waiting.
func TestPollCopyUpstreamCloseWithLastBytes(t *testing.T) {
	h := newPollHarness(t, record.KindSSE)
	h.s.route.IdleTimeout = 10 * time.Minute
	wd := NewWatchdog(WatchdogOptions{Tick: 10 * time.Millisecond, PeekAfter: 40 * time.Millisecond})
	defer wd.Stop()
	h.s.wd = wd
	wd.track(h.s)
	defer wd.untrack(h.s)
	seen := watchReads(h.peer)
	if _, err := io.WriteString(h.up, "9\r\ndata: 1\n\n\r\n"); err != nil {
		t.Fatal(err)
	}
	before := endWakes.Load()
	done := h.copyAsync()
	if err := seen.waitFor([]byte("data: 1\n\n")); err != nil {
		t.Fatal(err)
	}
	// Quiet, open: the watchdog adds the upstream socket to its hang-up
	// set and leaves the stream be.
	looked := func() bool { wd.mu.Lock(); defer wd.mu.Unlock(); return h.s.hupUp.seq > 0 }
	for i := 0; i < 3000 && !looked(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !looked() {
		t.Fatal("the watchdog never watched the quiet stream's upstream socket")
	}
	time.Sleep(50 * time.Millisecond) // a stream wrongly woken would end meanwhile
	select {
	case err := <-done:
		t.Fatalf("a quiet stream ended: %v", err)
	default:
	}
	if n := endWakes.Load() - before; n != 0 {
		t.Fatalf("%d wakes of a stream whose upstream is open", n)
	}
	sendLastWithFIN(t, h.up, "9\r\ndata: 2\n\n\r\n")
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a body cut by the upstream's close ended as complete")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream still waited 30 s after its upstream closed")
	}
	if err := seen.waitFor([]byte("data: 2\n\n")); err != nil {
		t.Error(err)
	}
	if r := h.s.reason.Load(); r == nil || *r != record.ErrUpstreamReset {
		t.Errorf("reason %v, want %s", r, record.ErrUpstreamReset)
	}
	if !bytes.Equal(h.s.rec.Chunks.Data, []byte("data: 1\n\ndata: 2\n\n")) {
		t.Errorf("captured %q", h.s.rec.Chunks.Data)
	}
	if n := endWakes.Load() - before; n < 1 {
		t.Errorf("the stream ended without the watchdog's wake (%d); it cannot", n)
	}
	wd.untrack(h.s)
	wd.mu.Lock()
	left := len(wd.hup.sets[upstreamSide])
	wd.mu.Unlock()
	if left != 0 || h.s.hupUp.seq != 0 {
		t.Errorf("after the stream's end %d upstream sockets stay in the hang-up set (seq %d)", left, h.s.hupUp.seq)
	}
	h.s.rb.release()
}

// TestShutdownReadKeepsUnreadBytes: the watchdog shuts an upstream socket
// whose peer closed down for reading, perhaps before its stream read the
// last bytes; they must stay readable, then the end.
func TestShutdownReadKeepsUnreadBytes(t *testing.T) {
	up, relay := tcpPair(t)
	sendLastWithFIN(t, up, "data: last\n\n")
	rc, err := relay.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	closed := false
	for !closed && time.Now().Before(deadline) {
		_ = rc.Control(func(fd uintptr) { closed = peerClosed(fd) })
		time.Sleep(time.Millisecond)
	}
	if !closed {
		t.Fatal("the peer's FIN never arrived")
	}
	if err := rc.Control(shutdownRead); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(relay)
	if err != nil || string(got) != "data: last\n\n" {
		t.Fatalf("read %q, %v after the shutdown; want the bytes, then the end", got, err)
	}
}
