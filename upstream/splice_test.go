package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// spliceHarness is a raw stream between two real loopback TCP connections:
// the upstream's (the test writes the response body into up) and the
// client's (a goroutine reads everything that arrives, to io.EOF).
type spliceHarness struct {
	s   *Stream
	up  net.Conn      // the upstream server's end: the test writes the body here
	bw  *bufio.Writer // the client writer under the chunked writer
	w   io.Writer     // the chunked writer
	in  int64         // bytes read from the upstream socket (the conn's counter)
	got chan []byte   // what the client read, raw, once its connection closes

	client net.Conn // the relay's end of the client connection
	peer   net.Conn // the client's end
}

// newSpliceHarness readies a raw stream whose record captures its bytes
// (capture) or keeps only their lengths and times (capture: meta). read
// says whether the client reads (into got); one that does not leaves the
// relay's writes blocked once the socket buffers are full.
func newSpliceHarness(t *testing.T, mode bodyMode, length int64, capture, read bool) *spliceHarness {
	t.Helper()
	h := &spliceHarness{got: make(chan []byte, 1)}
	upRelay, up := tcpPair(t)
	client, peer := tcpPair(t)
	h.up, h.client, h.peer = up, client, peer
	if read {
		go func() {
			b, _ := io.ReadAll(peer)
			h.got <- b
		}()
	}
	rec := record.Acquire(64 << 20)
	rec.Capture, rec.Kind = capture, record.KindRaw
	raw, err := upRelay.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	s := &Stream{route: &Route{Options: Options{Kind: record.KindRaw}}, rec: rec, start: time.Now(), client: client}
	s.rb.reset(upRelay, raw, &h.in)
	s.body.reset(&s.rb, mode, length)
	h.s = s
	h.bw = bufio.NewWriterSize(client, 4<<10)
	h.w = &chunkWriter{w: h.bw}
	return h
}

// finish ends the client's response as fasthttp would (the terminating
// chunk, then the connection closes) and returns the body the client
// decoded, or the error its chunked reader met.
func (h *spliceHarness) finish(t *testing.T) ([]byte, error) {
	t.Helper()
	h.bw.WriteString("0\r\n\r\n")
	h.bw.Flush()
	h.client.Close()
	var raw []byte
	select {
	case raw = <-h.got:
	case <-time.After(30 * time.Second):
		t.Fatal("the client read nothing")
	}
	return io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(raw)))
}

// relay runs the stream while write sends the upstream's response from
// another goroutine (after letting it write for head start first), checks
// that the client decoded exactly body, and returns how many bytes were
// spliced meanwhile.
func (h *spliceHarness) relay(t *testing.T, body []byte, headStart time.Duration, write func() error) int64 {
	t.Helper()
	before := SplicedBytes()
	errc := make(chan error, 1)
	go func() { errc <- write() }()
	time.Sleep(headStart)
	n, err := h.s.copyTo(h.w, h.bw)
	if err != nil || n != int64(len(body)) {
		t.Fatalf("copied %d, %v; want %d", n, err, len(body))
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	got, err := h.finish(t)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("the client decoded %d bytes (%v), want the upstream's %d", len(got), err, len(body))
	}
	return SplicedBytes() - before
}

// audio returns n bytes of a pattern that does not repeat within 251 bytes.
func audio(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

// writeSlowly writes p to c in pieces of step bytes with a pause after
// each, so that the body arrives as many reads, not one.
func writeSlowly(c net.Conn, p []byte, step int, pause time.Duration) error {
	for len(p) > 0 {
		k := min(step, len(p))
		if _, err := c.Write(p[:k]); err != nil {
			return err
		}
		p = p[k:]
		time.Sleep(pause)
	}
	return nil
}

// A fixed-length raw body that the record does not keep goes from socket
// to socket with splice(2): the client decodes exactly the upstream's
// bytes from well-formed chunked framing, the record counts every byte
// with the arrival times of the pieces, and the bytes never entered the
// read buffer.
func TestSpliceFixedBody(t *testing.T) {
	body := audio(3<<20 + 12345)
	h := newSpliceHarness(t, bodyFixed, int64(len(body)), false, true)
	spliced := h.relay(t, body, 0, func() error { return writeSlowly(h.up, body, 200<<10, 2*time.Millisecond) })
	rec := h.s.rec
	if rec.BytesOut != int64(len(body)) || h.in != int64(len(body)) {
		t.Errorf("record counts %d bytes out, the connection %d read; want %d", rec.BytesOut, h.in, len(body))
	}
	if rec.ChunkCount < 2 || len(rec.Chunks.AtMS) != rec.ChunkCount || len(rec.Chunks.Data) != 0 {
		t.Errorf("record: %d chunks, %d times, %d bytes kept; want >= 2 chunks, a time each, no bytes",
			rec.ChunkCount, len(rec.Chunks.AtMS), len(rec.Chunks.Data))
	}
	if spliced < int64(len(body))*9/10 {
		t.Errorf("%d of %d bytes were spliced; want nearly all (only the first read is copied)", spliced, len(body))
	}
	if !h.s.body.done || h.s.splice.pipe != nil || h.s.splice.crlfOwed {
		t.Errorf("after the body: done %v, pipe held %v, CRLF owed %v", h.s.body.done, h.s.splice.pipe != nil, h.s.splice.crlfOwed)
	}
}

// A chunked raw body splices the data of its chunks of 96 KiB or more and
// reads the framing and smaller chunks: chunks of every size, a chunk extension and
// a trailer, in pieces that split the framing anywhere, reach the client
// as the same bytes in well-formed framing.
func TestSpliceChunkedBody(t *testing.T) {
	sizes := []int{100 << 10, 3, 40 << 10, 17 << 10, 1, 300 << 10, 16 << 10, 70 << 10, 5, 128 << 10}
	var body, wire []byte
	off := 0
	for i, n := range sizes {
		part := audio(off + n)[off:]
		off += n
		body = append(body, part...)
		wire = strconv.AppendInt(wire, int64(n), 16)
		if i == 2 {
			wire = append(wire, ";ext=1"...)
		}
		wire = append(wire, "\r\n"...)
		wire = append(wire, part...)
		wire = append(wire, "\r\n"...)
	}
	wire = append(wire, "0\r\nX-Trailer: 1\r\n\r\n"...)
	for _, step := range []int{7 << 10, 64 << 10, 1 << 20} {
		t.Run("step "+strconv.Itoa(step), func(t *testing.T) {
			h := newSpliceHarness(t, bodyChunked, 0, false, true)
			spliced := h.relay(t, body, 0, func() error { return writeSlowly(h.up, wire, step, time.Millisecond) })
			if h.s.rec.BytesOut != int64(len(body)) || h.in != int64(len(wire)) {
				t.Errorf("record counts %d bytes out, the connection %d read; want %d and %d", h.s.rec.BytesOut, h.in, len(body), len(wire))
			}
			// At least one run of a large chunk (a read may take the head
			// of a chunk with the framing before it); chunks under 96 KiB
			// are copied.
			if spliced < minSpliceChunk {
				t.Errorf("%d bytes were spliced; want the large chunks' data", spliced)
			}
		})
	}
}

// A record that keeps the bytes (capture: full) gets every one of them:
// nothing is spliced.
func TestSpliceNotWhenCaptured(t *testing.T) {
	body := audio(1 << 20)
	h := newSpliceHarness(t, bodyFixed, int64(len(body)), true, true)
	spliced := h.relay(t, body, 0, func() error { return writeSlowly(h.up, body, 128<<10, time.Millisecond) })
	if !bytes.Equal(h.s.rec.Chunks.Data, body) {
		t.Errorf("captured %d bytes, want all %d", len(h.s.rec.Chunks.Data), len(body))
	}
	if spliced != 0 {
		t.Errorf("%d bytes were spliced from a captured stream", spliced)
	}
}

// An upstream that closes in the middle of a spliced run ends the stream
// as upstream_reset; the client's body is cut short, never completed.
func TestSpliceUpstreamCut(t *testing.T) {
	body := audio(2 << 20)
	h := newSpliceHarness(t, bodyFixed, int64(len(body)), false, true)
	go func() {
		writeSlowly(h.up, body[:1<<20], 100<<10, time.Millisecond)
		h.up.Close()
	}()
	n, err := h.s.copyTo(h.w, h.bw)
	if err == nil || n >= int64(len(body)) {
		t.Fatalf("copied %d, %v; want an error before %d", n, err, len(body))
	}
	if r := h.s.reason.Load(); r == nil || *r != record.ErrUpstreamReset {
		t.Errorf("reason %v, want %s", r, record.ErrUpstreamReset)
	}
	if h.s.splice.pipe != nil {
		t.Error("the failed run's pipe is still held")
	}
	got, err := h.finish(t)
	if err == nil {
		t.Errorf("the client decoded a complete body of %d bytes from a cut stream", len(got))
	}
}

// A client that stops reading blocks the spliced run in its write, like a
// copied one; the watchdog's abort (a write deadline in the past)
// releases it, and the stream ends as client_closed.
func TestSpliceAbortedWrite(t *testing.T) {
	body := audio(32 << 20)
	h := newSpliceHarness(t, bodyFixed, int64(len(body)), false, false)
	before := SplicedBytes()
	go writeSlowly(h.up, body, 1<<20, 0)
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := h.s.copyTo(h.w, h.bw)
		done <- result{n, err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	// Blocked in a write after bytes were spliced: the spliced write (the
	// first went through the writer and returned).
	for h.s.writeSince.Load() == 0 || SplicedBytes() == before {
		if time.Now().After(deadline) {
			t.Fatal("the stream never blocked in a spliced write")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // still blocked: nobody reads
	h.s.abort(record.ErrClientClosed)
	select {
	case r := <-done:
		if r.err == nil || r.n >= int64(len(body)) {
			t.Fatalf("copied %d, %v; want a failed write", r.n, r.err)
		}
		var errno syscall.Errno
		if errors.As(r.err, &errno) {
			t.Errorf("error %v: want the deadline's, not a system call's", r.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the aborted stream's write never returned")
	}
	if r := h.s.reason.Load(); r == nil || *r != record.ErrClientClosed {
		t.Errorf("reason %v, want %s", r, record.ErrClientClosed)
	}
}

// A body of large chunks that piled up in the socket before the relay
// read (a busy relay) is still spliced chunk by chunk: reads stop at the
// framing after each chunk, instead of taking the head of the next one
// and leaving too little of it to splice.
func TestSpliceChunksBehind(t *testing.T) {
	const chunks, size = 20, 128 << 10
	var body, wire []byte
	for i := 0; i < chunks; i++ {
		part := audio(size)
		part[0] = byte(i)
		body = append(body, part...)
		wire = strconv.AppendInt(wire, size, 16)
		wire = append(wire, "\r\n"...)
		wire = append(wire, part...)
		wire = append(wire, "\r\n"...)
	}
	wire = append(wire, "0\r\n\r\n"...)
	h := newSpliceHarness(t, bodyChunked, 0, false, true)
	// The socket buffers fill before the first read.
	spliced := h.relay(t, body, 200*time.Millisecond, func() error {
		_, err := h.up.Write(wire)
		return err
	})
	// All but the first chunk, less the few bytes read with each framing.
	if spliced < (chunks-1)*(size-framingRead) {
		t.Errorf("%d of %d bytes were spliced; want every chunk after the first", spliced, len(body))
	}
}

// An upstream that sends more than its Content-Length, with the body's
// last bytes: a spliced body leaves the excess in the socket, so the
// connection must not go back to its pool, where its next response would
// be read from those bytes.
func TestSpliceExcessNotReused(t *testing.T) {
	body := audio(1 << 20)
	for _, extra := range []int{0, 100} {
		h := newSpliceHarness(t, bodyFixed, int64(len(body)), false, true)
		tail := append(append([]byte(nil), body[512<<10:]...), audio(extra)...)
		h.relay(t, body, 0, func() error {
			if err := writeSlowly(h.up, body[:512<<10], 128<<10, time.Millisecond); err != nil {
				return err
			}
			time.Sleep(50 * time.Millisecond) // the relay waits in a spliced run
			_, err := h.up.Write(tail)
			return err
		})
		if reusable := !h.s.closeAfter && h.s.rb.buffered() == 0; reusable != (extra == 0) {
			t.Errorf("%d bytes past the body: the connection is reusable: %v", extra, reusable)
		}
	}
}

// A spliced stream waiting for its upstream's next bytes holds no pipe, as
// it holds no read buffer: the pipe goes back to the pool while the socket
// is idle and is taken again when bytes arrive. No run keeps one after it
// ends, whether it completed or failed.
func TestSpliceIdleHoldsNoPipe(t *testing.T) {
	body := audio(1 << 20)
	h := newSpliceHarness(t, bodyFixed, int64(len(body)), false, true)
	paused := make(chan struct{})
	held := make(chan int64, 1)
	go func() {
		<-paused
		time.Sleep(300 * time.Millisecond) // the relay has spliced all it got and waits
		held <- pipesHeld.Load()
	}()
	h.relay(t, body, 0, func() error {
		if err := writeSlowly(h.up, body[:300<<10], 100<<10, time.Millisecond); err != nil {
			return err
		}
		close(paused)
		time.Sleep(600 * time.Millisecond)
		return writeSlowly(h.up, body[300<<10:], 100<<10, time.Millisecond)
	})
	if n := <-held; n != 0 {
		t.Errorf("%d pipes held while the stream waited for its upstream; want 0", n)
	}
	if n := pipesHeld.Load(); n != 0 {
		t.Errorf("%d pipes held after the stream ended", n)
	}
	cut := newSpliceHarness(t, bodyFixed, int64(len(body)), false, true)
	go func() {
		writeSlowly(cut.up, body[:600<<10], 100<<10, time.Millisecond)
		cut.up.Close()
	}()
	if _, err := cut.s.copyTo(cut.w, cut.bw); err == nil {
		t.Fatal("a cut upstream relayed whole")
	}
	if n := pipesHeld.Load(); n != 0 {
		t.Errorf("%d pipes held after a failed run", n)
	}
}

// TestSpliceNoPipeAfterWait: a stream whose pipe went back to the pool
// while its upstream paused mid-run, and that can have none again
// (descriptors exhausted), copies the rest instead of failing: the client
// decodes the upstream's bytes exactly, and the record counts them all. A
// Content-Length body, and 200 KiB chunks paused in the middle of one.
func TestSpliceNoPipeAfterWait(t *testing.T) {
	body := audio(1 << 20)
	var wire []byte
	for off := 0; off < len(body); off += 200 << 10 {
		part := body[off:min(off+200<<10, len(body))]
		wire = strconv.AppendInt(wire, int64(len(part)), 16)
		wire = append(wire, "\r\n"...)
		wire = append(wire, part...)
		wire = append(wire, "\r\n"...)
	}
	wire = append(wire, "0\r\n\r\n"...)
	for _, tt := range []struct {
		name   string
		mode   bodyMode
		length int64
		wire   []byte
	}{
		{"content-length", bodyFixed, int64(len(body)), body},
		{"chunked", bodyChunked, 0, wire},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer noPipes.Store(false)
			h := newSpliceHarness(t, tt.mode, tt.length, false, true)
			spliced := h.relay(t, body, 0, func() error {
				if err := writeSlowly(h.up, tt.wire[:300<<10], 100<<10, time.Millisecond); err != nil {
					return err
				}
				time.Sleep(300 * time.Millisecond) // the relay has spliced all it got and waits
				noPipes.Store(true)
				return writeSlowly(h.up, tt.wire[300<<10:], 100<<10, time.Millisecond)
			})
			if spliced <= 0 || spliced >= int64(len(body)) {
				t.Errorf("%d bytes spliced, want some (before the wait) and not all", spliced)
			}
			if r := h.s.reason.Load(); r != nil {
				t.Errorf("the stream failed: %s", *r)
			}
			if h.s.rec.BytesOut != int64(len(body)) || h.in != int64(len(tt.wire)) {
				t.Errorf("record counts %d bytes, %d read from the socket; want %d and %d", h.s.rec.BytesOut, h.in, len(body), len(tt.wire))
			}
			if n := pipesHeld.Load(); n != 0 {
				t.Errorf("%d pipes held after the stream ended", n)
			}
		})
	}
}

// TestCopyRestWaitsThroughAPause: the no-pipe fallback's copy of a run's
// rest waits for its bytes even in a step that would not wait for the next
// event (a detached stream's idle wait set noWait). Before the fix the
// empty socket's errWouldBlock cut the stream as upstream_reset.
func TestCopyRestWaitsThroughAPause(t *testing.T) {
	const n = 64 << 10
	h := newSpliceHarness(t, bodyFixed, n, false, true)
	h.s.rb.noWait = true // as the step set it after an idle gap
	done := make(chan error, 1)
	go func() {
		_, err := h.s.copyRest(n)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // the socket is empty meanwhile
	if _, err := h.up.Write(audio(n)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("copyRest: %v (reason %v)", err, h.s.reason.Load())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("copyRest did not return")
	}
	h.client.Close()
	if got := <-h.got; !bytes.Equal(got, audio(n)) {
		t.Fatalf("client got %d bytes, want the %d sent", len(got), n)
	}
}
