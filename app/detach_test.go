package app

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/upstream"
)

// TestDetachedStreams: streams written apart from the server
// (server.detach_streams, the default: handlers/detach.go) look as when the
// server writes them (detach_streams: false), on the wire and in their
// rows. On one keep-alive connection: a stream, then another; two
// requests sent at once (pipelined) answered in order; a request body of
// 40 KiB (taken from the request by reference before the server lets go
// of it) whole in its row; a request with Connection: close answered with
// it, and the connection closed after the stream. An HTTP/1.0 request is
// not detached (no chunked framing) and still answered. At shutdown, a
// connection idle after a stream is closed at once.
func TestDetachedStreams(t *testing.T) {
	for _, detach := range []bool{true, false} {
		t.Run("detach_streams="+strconv.FormatBool(detach), func(t *testing.T) {
			streamsOnOneConnection(t, detach)
		})
	}
}

// streamsOnOneConnection is TestDetachedStreams with detach_streams set
// as given: false must behave the same.
func streamsOnOneConnection(t *testing.T, detach bool) {
	r := startRelayWith(t, "", func(c *Config) { c.Server.DetachStreams = &detach })
	before := upstream.HijackedStreams()
	defer func() {
		// The first six streams (the pipelined pair and the one with
		// Connection: close included) were detached, or none.
		n := upstream.HijackedStreams() - before
		if detach && n < 6 || !detach && n != 0 {
			t.Errorf("detach_streams %v: %d streams detached", detach, n)
		}
	}()
	addr := strings.TrimPrefix(r.base, "http://")
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	request := func(proto, body, extra string) string {
		return "POST /v1/chat/completions " + proto + "\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
			"\r\nContent-Type: application/json\r\nX-Mock-Chunks: 5\r\n" + extra +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	small := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	large := `{"model":"m","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("x", 40<<10) + `"}]}`
	// answer reads one response and checks it against its row.
	answer := func(what, body string) *http.Response {
		t.Helper()
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		got, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || bytes.Count(got, []byte("data: ")) < 5 {
			t.Fatalf("%s: status %d, %v, %q", what, resp.StatusCode, err, got)
		}
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if row.Status != http.StatusOK || row.ErrorType != "" || row.ReqBody != body || len(row.Chunks) == 0 ||
			strings.Join(row.Chunks, "") != string(got) {
			t.Fatalf("%s: row status %d error %q, body %d bytes (want %d), %d chunks", what, row.Status, row.ErrorType,
				len(row.ReqBody), len(body), len(row.Chunks))
		}
		return resp
	}
	write := func(s string) {
		t.Helper()
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
	}

	write(request("HTTP/1.1", small, ""))
	answer("first stream", small)
	write(request("HTTP/1.1", large, ""))
	answer("second stream, large body", large)
	write(request("HTTP/1.1", small, "") + request("HTTP/1.1", large, ""))
	answer("pipelined, first", small)
	answer("pipelined, second", large)
	write(request("HTTP/1.1", small, "Connection: close\r\n"))
	if resp := answer("Connection: close", small); !resp.Close {
		t.Errorf("a request with Connection: close got a response without it: %v", resp.Header)
	}
	if n, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Connection: close the connection stays open: read %q, %v", n, err)
	}

	// A connection left idle after a stream is closed at shutdown at once,
	// not only once the server counts it idle (5 s after it was served
	// anew, detached: handlers/detach.go).
	idle, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	br = bufio.NewReader(idle)
	c = idle
	write(request("HTTP/1.1", small, ""))
	answer("stream before shutdown", small)
	defer func() {
		stopped := make(chan struct{})
		go func() { r.stop(t); close(stopped) }()
		_ = idle.SetReadDeadline(time.Now().Add(4 * time.Second))
		if b, err := br.ReadByte(); err != io.EOF {
			t.Errorf("an idle keep-alive connection at shutdown: read %q, %v; want it closed at once", b, err)
		}
		<-stopped
	}()

	c10, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c10.Close()
	_ = c10.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c10, request("HTTP/1.0", small, "")); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c10)
	if !bytes.HasPrefix(got, []byte("HTTP/1.")) || !bytes.Contains(got, []byte(" 200 ")) || bytes.Count(got, []byte("data: ")) < 5 {
		t.Errorf("HTTP/1.0 request: %q", got)
	}
}

// TestDetachAbove: with server.detach_above N, a stream is detached only
// while more than N relayed requests are in flight, its own included
// (relay_detached_streams_total counts those). With N = 1: a stream alone
// is written by the server's goroutine; one that begins while another is
// open is detached; both are whole on the wire and in their rows. The
// bound's default (128) leaves a lone stream to the server too.
func TestDetachAbove(t *testing.T) {
	one := int64(1)
	r := startRelayWith(t, "", func(c *Config) { c.Server.DetachAbove = &one })
	addr := strings.TrimPrefix(r.base, "http://")
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	// open sends a stream's request and reads its response head.
	open := func(hdr string) (*http.Response, net.Conn) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		if _, err := io.WriteString(c, relayReq("/v1/chat/completions", hdr, body)); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream %q: %v, %v", hdr, resp, err)
		}
		return resp, c
	}
	// whole reads the rest of a stream and checks it against its row.
	whole := func(what string, resp *http.Response, chunks int) {
		t.Helper()
		got, err := io.ReadAll(resp.Body)
		if err != nil || bytes.Count(got, []byte("data: ")) < chunks {
			t.Fatalf("%s: %v, %d events: %q", what, err, bytes.Count(got, []byte("data: ")), got)
		}
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if row.Status != http.StatusOK || row.ErrorType != "" || strings.Join(row.Chunks, "") != string(got) {
			t.Fatalf("%s: row status %d error %q, %d chunks", what, row.Status, row.ErrorType, len(row.Chunks))
		}
	}

	before := upstream.HijackedStreams()
	resp, _ := open("X-Mock-Chunks: 5\r\n")
	whole("a stream alone", resp, 5)
	if n := upstream.HijackedStreams() - before; n != 0 {
		t.Fatalf("a stream alone, detach_above 1: %d detached, want 0", n)
	}

	// A long stream stays open (50 events 40 ms apart) while a short one
	// runs: the short one is the second in flight.
	long, _ := open("X-Mock-Chunks: 50\r\nX-Mock-Delay-Ms: 40\r\n")
	short, _ := open("X-Mock-Chunks: 5\r\n")
	whole("the second stream in flight", short, 5)
	if n := upstream.HijackedStreams() - before; n != 1 {
		t.Errorf("the second stream in flight, detach_above 1: %d detached, want 1", n)
	}
	whole("the stream that began alone", long, 50)
	if n := upstream.HijackedStreams() - before; n != 1 {
		t.Errorf("after both streams: %d detached, want 1", n)
	}

	var c Config
	c.setDefaults("relay")
	if c.Server.DetachAbove == nil || *c.Server.DetachAbove != 128 {
		t.Errorf("detach_above default: %v, want 128", c.Server.DetachAbove)
	}
	neg := int64(-1)
	c.Server.DetachAbove = &neg
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "server.detach_above") {
		t.Errorf("detach_above -1: %v, want an error naming the field", err)
	}
}
