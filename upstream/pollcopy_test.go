package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// pollHarness is a full-capture stream of kind whose upstream is a real
// loopback TCP connection read through its RawConn (as the relay's pooled
// upstream connections are), writing to a second one whose far end
// (peer) stands for the client.
type pollHarness struct {
	s        *Stream
	up, peer net.Conn // the upstream's end, the client's end
	bw       *bufio.Writer
	w        *chunkWriter
}

func newPollHarness(t testing.TB, kind record.Kind) *pollHarness {
	t.Helper()
	up, relay := tcpPair(t)
	raw, err := relay.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	client, peer := tcpPair(t)
	rec := record.Acquire(64 << 20)
	rec.Capture, rec.Kind = true, kind
	s := &Stream{route: &Route{Options: Options{Kind: kind}}, rec: rec, start: time.Now(), client: client}
	s.up = &conn{Conn: relay, raw: raw} // what the watchdog's abort shuts down
	var count int64
	s.rb.reset(relay, raw, &count)
	s.body.reset(&s.rb, bodyChunked, 0)
	bw := bufio.NewWriterSize(client, 4<<10)
	return &pollHarness{s: s, up: up, peer: peer, bw: bw, w: &chunkWriter{w: bw}}
}

// flood has the upstream send 1,000-byte chunks without end (up to a
// million, or until the test ends or the socket fails).
func (h *pollHarness) flood(t *testing.T) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	frame := chunked(string(bytes.Repeat([]byte("x"), 1000)))
	frame = frame[:len(frame)-5] // no terminating chunk
	go func() {
		for i := 0; i < 1_000_000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := h.up.Write(frame); err != nil {
				return
			}
		}
	}()
}

// copyAsync runs copyPolled on a goroutine of its own; its error comes on the
// channel.
func (h *pollHarness) copyAsync() <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := h.s.copyPolled(h.w, h.bw)
		done <- err
	}()
	return done
}

// seenBytes collects what a connection's far end reads, and lets a
// goroutine wait until some bytes are among it.
type seenBytes struct {
	mu   sync.Mutex
	b    []byte
	more chan struct{}
	n    atomic.Int64
}

func watchReads(c net.Conn) *seenBytes {
	sb := &seenBytes{more: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 16<<10)
		for {
			n, err := c.Read(buf)
			sb.mu.Lock()
			sb.b = append(sb.b, buf[:n]...)
			sb.mu.Unlock()
			sb.n.Add(int64(n))
			select {
			case sb.more <- struct{}{}:
			default:
			}
			if err != nil {
				return
			}
		}
	}()
	return sb
}

// waitFor waits (10 s at most) until want is among the bytes read.
func (sb *seenBytes) waitFor(want []byte) error {
	deadline := time.After(10 * time.Second)
	for {
		sb.mu.Lock()
		ok := bytes.Contains(sb.b, want)
		sb.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-sb.more:
		case <-deadline:
			return fmt.Errorf("the client never read %q", want)
		}
	}
}

// TestPollCopyWaitsWithoutEmptyReads: an upstream sends events one at a
// time, each 5 ms after the client has the one before, so that the relay
// waits for every event. An SSE stream, copied in the poller's callback,
// reads each event once, without an empty read before its wait; a raw
// stream, copied with a RawConn.Read per fill, tries a read before
// almost every wait. Both deliver every byte, in order, and capture them.
func TestPollCopyWaitsWithoutEmptyReads(t *testing.T) {
	const events = 40
	for _, tt := range []struct {
		name string
		kind record.Kind
	}{{"sse", record.KindSSE}, {"raw", record.KindRaw}} {
		t.Run(tt.name, func(t *testing.T) {
			h := newPollHarness(t, tt.kind)
			seen := watchReads(h.peer)
			var body []byte
			wrote := make(chan error, 1)
			go func() {
				for k := 0; k < events; k++ {
					ev := "data: " + strconv.Itoa(k) + "\n\n"
					if _, err := fmt.Fprintf(h.up, "%x\r\n%s\r\n", len(ev), ev); err != nil {
						wrote <- err
						return
					}
					if err := seen.waitFor([]byte(ev)); err != nil {
						wrote <- err
						return
					}
					// Time for the relay's next read to come first: the
					// classic path's then finds nothing (the contrast
					// asserted below); the poller path's never tries.
					time.Sleep(5 * time.Millisecond)
				}
				_, err := io.WriteString(h.up, "0\r\n\r\n")
				wrote <- err
			}()
			for k := 0; k < events; k++ {
				body = append(body, "data: "+strconv.Itoa(k)+"\n\n"...)
			}
			before := EmptyReads()
			n, err := h.s.copyPolled(h.w, h.bw)
			empty := EmptyReads() - before
			if err != nil || n != int64(len(body)) {
				t.Fatalf("copied %d, %v; want %d", n, err, len(body))
			}
			if err := <-wrote; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(h.s.rec.Chunks.Data, body) {
				t.Errorf("captured %q, want %q", h.s.rec.Chunks.Data, body)
			}
			if h.s.rec.ChunkCount != events {
				t.Errorf("%d chunks recorded, want %d (one read an event)", h.s.rec.ChunkCount, events)
			}
			switch {
			case tt.kind == record.KindSSE && empty > events/4:
				t.Errorf("%d empty reads for %d events waited for, want about 1", empty, events)
			case tt.kind == record.KindRaw && empty < events/4:
				t.Errorf("%d empty reads for %d events on the classic path; the contrast this test draws is gone", empty, events)
			}
			t.Logf("%d empty reads for %d events", empty, events)
			h.s.rb.release()
		})
	}
}

// TestPollCopyAbortWhileFlooded: the watchdog aborts a stream whose
// upstream never lets it wait (the bytes keep coming) and whose socket it
// does not get to close: copying in the poller's callback still stops,
// after the step it was in, with the abort's reason.
func TestPollCopyAbortWhileFlooded(t *testing.T) {
	h := newPollHarness(t, record.KindSSE)
	h.s.rec.Capture = false // a long stream: keep its size out of the test
	seen := watchReads(h.peer)
	h.flood(t)
	go func() {
		deadline := time.Now().Add(10 * time.Second)
		for seen.n.Load() < 256<<10 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		h.s.abort(record.ErrUpstreamTimeout)
	}()
	done := h.copyAsync()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("an aborted stream copied to its end")
		}
		if !errors.Is(err, errAborted) && !errors.Is(err, net.ErrClosed) {
			t.Logf("ended with %v", err) // a client write cut by the abort's deadline ends it too
		}
	case <-time.After(30 * time.Second):
		t.Fatal("an aborted stream kept copying for 30 s")
	}
	if r := h.s.reason.Load(); r == nil || *r != record.ErrUpstreamTimeout {
		t.Errorf("reason %v, want %s", r, record.ErrUpstreamTimeout)
	}
	h.s.rb.release()
}

// TestPollCopyAbortWhileClientBlocked: the watchdog gives up a client that
// stopped reading while its stream was being written in the upstream's
// poller callback. The abort must not wait for that callback (closing the
// upstream socket would: Close waits for the reads in progress, and this
// one lasts until the client write returns, which the abort's own write
// deadline brings about only after it), and the stream then ends.
func TestPollCopyAbortWhileClientBlocked(t *testing.T) {
	h := newPollHarness(t, record.KindSSE)
	h.s.rec.Capture = false
	_ = h.s.client.(*net.TCPConn).SetWriteBuffer(16 << 10)
	_ = h.peer.(*net.TCPConn).SetReadBuffer(16 << 10) // and never read
	h.flood(t)
	done := h.copyAsync()
	// Wait for a client write that does not end (the same one seen twice,
	// 100 ms apart).
	blocked := false
	for i := 0; i < 200 && !blocked; i++ {
		ws := h.s.writeSince.Load()
		time.Sleep(100 * time.Millisecond)
		blocked = ws != 0 && h.s.writeSince.Load() == ws
	}
	if !blocked {
		t.Fatal("the client write never blocked")
	}
	aborted := make(chan struct{})
	go func() {
		h.s.abort(record.ErrClientClosed)
		close(aborted)
	}()
	select {
	case <-aborted:
	case <-time.After(10 * time.Second):
		t.Fatal("abort blocked for 10 s behind the stream's client write")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("an aborted stream copied to its end")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream kept going 10 s after its abort")
	}
	if r := h.s.reason.Load(); r == nil || *r != record.ErrClientClosed {
		t.Errorf("reason %v, want %s", r, record.ErrClientClosed)
	}
	h.s.rb.release()
}

// TestAbortedUntilCloseBodyIsCut: a body that ends when the upstream closes
// its connection, aborted by the watchdog. The abort shuts the socket down,
// and the read then sees the end of the stream, as it would the body's end:
// the stream must still end as cut (an error, so the client gets no
// terminating chunk), on either copy path.
func TestAbortedUntilCloseBodyIsCut(t *testing.T) {
	for _, kind := range []record.Kind{record.KindSSE, record.KindRaw} {
		h, done := startUntilClose(t, kind)
		h.s.abort(record.ErrUpstreamTimeout)
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("kind %v: an aborted body read until close ended as complete", kind)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("kind %v: the stream kept going 10 s after its abort", kind)
		}
		h.s.rb.release()
	}
}

// startUntilClose starts copying a body of kind that ends when the upstream
// closes, once the client has its first event: the copy is then waiting
// for more. Its error comes on the channel.
func startUntilClose(t *testing.T, kind record.Kind) (*pollHarness, <-chan error) {
	t.Helper()
	h := newPollHarness(t, kind)
	h.s.body.reset(&h.s.rb, bodyClose, 0)
	seen := watchReads(h.peer)
	if _, err := io.WriteString(h.up, "data: 1\n\n"); err != nil {
		t.Fatal(err)
	}
	done := h.copyAsync()
	if err := seen.waitFor([]byte("data: 1\n\n")); err != nil {
		t.Fatal(err)
	}
	return h, done
}
