package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http/httputil"
	"strconv"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// chunkWriter frames each write as one HTTP chunk and flushes it, as
// fasthttp's chunked body writer does.
type chunkWriter struct {
	w    *bufio.Writer
	size [20]byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	c.w.Write(append(strconv.AppendInt(c.size[:0], int64(len(p)), 16), '\r', '\n'))
	c.w.Write(p)
	c.w.WriteString("\r\n")
	return len(p), c.w.Flush()
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case server = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// socketStream is a full-capture SSE stream that reads its upstream body
// from src and writes to the client's end of a loopback TCP pair, through
// bw (4 KiB) as fasthttp's chunked writer would. finish writes the
// terminating chunk (the last chunk may wait in bw for it, as it waits in
// fasthttp's buffer), closes the connection and returns the body the other
// end decoded from the chunked framing it read.
func socketStream(t *testing.T, src io.Reader) (s *Stream, bw *bufio.Writer, finish func() []byte) {
	t.Helper()
	client, server := tcpPair(t)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(server)
		got <- b
	}()
	rec := record.Acquire(64 << 20)
	rec.Capture, rec.Kind = true, record.KindSSE
	s = &Stream{route: &Route{Options: Options{Kind: record.KindSSE}}, rec: rec, start: time.Now(), client: client}
	s.rb.reset(src, nil, nil)
	s.body.reset(&s.rb, bodyChunked, 0)
	bw = bufio.NewWriterSize(client, 4<<10)
	finish = func() []byte {
		t.Helper()
		bw.WriteString("0\r\n\r\n")
		bw.Flush()
		client.Close()
		var raw []byte
		select {
		case raw = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("client read nothing")
		}
		decoded, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatalf("client read no well-formed chunked body: %v (%d bytes decoded)", err, len(decoded))
		}
		return decoded
	}
	return s, bw, finish
}

// TestStreamFramedWrites relays bodies whose bytes arrive in every kind of
// split (mid-chunk, mid-size-line, mid-CRLF, many chunks per read) through
// the direct path: what a client reads over a real socket is well-formed
// chunked framing of exactly the upstream's body.
func TestStreamFramedWrites(t *testing.T) {
	var body []byte
	var parts []string
	for i := 0; i < 300; i++ {
		p := sseChunk[:1+i*7%len(sseChunk)]
		parts = append(parts, string(p))
		body = append(body, p...)
	}
	wire := chunked(parts...)
	for _, step := range []int{1, 2, 5, 13, 100, 4096, len(wire)} {
		t.Run("step "+strconv.Itoa(step), func(t *testing.T) {
			s, bw, finish := socketStream(t, &slowReader{data: wire, step: step})
			n, err := s.copyTo(&chunkWriter{w: bw}, bw)
			if err != nil || n != int64(len(body)) {
				t.Fatalf("copied %d, %v; want %d", n, err, len(body))
			}
			if decoded := finish(); !bytes.Equal(decoded, body) {
				t.Fatalf("client decoded %d bytes, want %d", len(decoded), len(body))
			}
			if !bytes.Equal(s.rec.Chunks.Data, body) {
				t.Errorf("captured %d bytes, want %d", len(s.rec.Chunks.Data), len(body))
			}
			s.rb.release()
		})
	}
}

// TestReadBufRawSocket decodes a chunked body that arrives over a real
// TCP socket in pieces with pauses between them, read in the poller's
// callback (the buffer goes back to the pool while the socket is idle).
func TestReadBufRawSocket(t *testing.T) {
	up, relay := tcpPair(t)
	raw, err := relay.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	wire := chunked("data: 1\n\n", "data: 2\n\n", "data: 3\n\n")
	go func() {
		for i := 0; i < len(wire); i += 7 {
			up.Write(wire[i:min(i+7, len(wire))])
			time.Sleep(2 * time.Millisecond)
		}
	}()
	var count int64
	var rb readBuf
	rb.reset(relay, raw, &count)
	var b bodyReader
	b.reset(&rb, bodyChunked, 0)
	_ = relay.SetReadDeadline(time.Now().Add(20 * time.Second))
	var got []byte
	for i := 0; i < 1000; i++ {
		v, err := b.next()
		got = append(got, rb.buf[v.start:v.end]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != "data: 1\n\ndata: 2\n\ndata: 3\n\n" || count != int64(len(wire)) {
		t.Fatalf("decoded %q, counted %d of %d bytes", got, count, len(wire))
	}
	rb.release()
}

// bodyWriterProbe is a response body stream that reports what
// chunkedWriterBuffer makes of the writer fasthttp hands it.
type bodyWriterProbe struct {
	found *bufio.Writer
	body  []byte
}

func (p *bodyWriterProbe) Read([]byte) (int, error)  { return 0, io.EOF }
func (p *bodyWriterProbe) SupportsBodyWriteTo() bool { return true }
func (p *bodyWriterProbe) WriteTo(w io.Writer) (int64, error) {
	p.found = chunkedWriterBuffer(w)
	n, err := w.Write(p.body)
	return int64(n), err
}

// TestChunkedWriterBufferFound: the fasthttp in go.mod hands a body stream
// its chunked writer with the buffer where chunkedWriterBuffer looks for
// it; without it every chunk would take the slower path (and this test
// says so when a fasthttp upgrade changes the writer).
func TestChunkedWriterBufferFound(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	probe := &bodyWriterProbe{body: []byte("data: x\n\n")}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.Response.SetBodyStream(probe, -1)
	}}
	go srv.Serve(ln)
	defer srv.Shutdown()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	var resp fasthttp.Response
	if err := resp.Read(bufio.NewReader(c)); err != nil {
		t.Fatal(err)
	}
	if string(resp.Body()) != "data: x\n\n" {
		t.Fatalf("body %q", resp.Body())
	}
	if probe.found == nil {
		t.Fatal("chunkedWriterBuffer found no buffer under fasthttp's chunked body writer")
	}
}
