package app

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

// TestDrainAnswersSayClose: an answer whose head goes out after the drain
// began (its upstream answered late) says Connection: close, detached or
// not: it said nothing, the client sent its next request on the same
// connection, and the relay's close left that request unanswered (EOF, no
// status, no row), which an SDK cannot safely send again.
func TestDrainAnswersSayClose(t *testing.T) {
	for _, detach := range []bool{true, false} {
		t.Run(map[bool]string{true: "detached", false: "not detached"}[detach], func(t *testing.T) {
			r := startRelayWith(t, "", func(c *Config) { c.Server.DetachStreams = &detach })
			c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req := strings.Replace(relayReq("/v1/chat/completions", mockllm.HeaderFirstByteDelay+": 1500\r\n"+mockllm.HeaderChunks+": 2\r\n", `{"model":"m","stream":true}`), "Connection: close\r\n", "", 1)
			if _, err := io.WriteString(c, req); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // the request is with the upstream
			beginShutdown(t, r)
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !resp.Close {
				t.Errorf("answer written during the drain: status %d, Connection %q; want 200 saying close", resp.StatusCode, resp.Header.Get("Connection"))
			}
		})
	}
}

// TestDrainRefusalsSayClose: a refusal written during the drain (a request
// begun on a kept-alive connection after the signal) says Connection:
// close too.
func TestDrainRefusalsSayClose(t *testing.T) {
	r := startRelay(t, "")
	c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a := r.app
	// Served first (the server's goroutine waits for its request): one
	// still queued when the server stops is closed unanswered, by the
	// kernel with the listener or by fasthttp's stopping workers (a
	// failure on a busy machine, seen under -race, not the relay's).
	for end := time.Now().Add(10 * time.Second); a.fiber.Server().GetCurrentConcurrency() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the connection was not accepted in 10 s")
		}
	}
	beginShutdown(t, r)
	deadline := time.Now().Add(10 * time.Second)
	for a.relay.Ready() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	req := strings.Replace(relayReq("/v1/chat/completions", "", `{"model":"m","stream":true}`), "Connection: close\r\n", "", 1)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || !resp.Close {
		t.Errorf("a request begun during the drain: status %d, Connection %q; want 503 saying close", resp.StatusCode, resp.Header.Get("Connection"))
	}
}

// TestDrainKeptAliveConnections: requests sent during the drain on
// connections kept alive from before it are answered 503 shutting_down,
// saying close, with a row naming the key's tenant: the next request after a stream that ended in
// the drain, and one on a connection idle at the signal while a stream was
// still in flight. The server's shutdown closed both connections (EOF, no
// status, no row: a POST an SDK cannot safely send again).
func TestDrainKeptAliveConnections(t *testing.T) {
	r := startRelay(t, "")
	addr := strings.TrimPrefix(r.base, "http://")
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		return c, bufio.NewReader(c)
	}
	keepAlive := func(extra string) string {
		return strings.Replace(relayReq("/v1/chat/completions", extra, `{"model":"m","stream":true}`), "Connection: close\r\n", "", 1)
	}
	send := func(c net.Conn, br *bufio.Reader, req string) *http.Response {
		t.Helper()
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer: %v", err)
		}
		return resp
	}
	refused := func(what string, resp *http.Response) {
		t.Helper()
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 503 || !resp.Close || !strings.Contains(string(body), "shutting_down") {
			t.Fatalf("%s: %d, Connection %q, %s; want 503 shutting_down saying close", what, resp.StatusCode, resp.Header.Get("Connection"), body)
		}
		// Named by its key, as every refused request's row is.
		if rw := r.rows.wait(t, resp.Header.Get("X-Request-Id")); rw.Status != 503 || rw.Tenant != "test-tenant" || rw.KeyID == "" {
			t.Errorf("%s: row status %d tenant %q key %q, want 503 with the key's tenant", what, rw.Status, rw.Tenant, rw.KeyID)
		}
	}
	idle, idleR := dial()
	first := send(idle, idleR, keepAlive(""))
	_, _ = io.Copy(io.Discard, first.Body)
	first.Body.Close()
	if first.StatusCode != 200 || first.Close {
		t.Fatalf("first request: %d, close %v", first.StatusCode, first.Close)
	}
	streaming, streamingR := dial()
	stream := send(streaming, streamingR, keepAlive(mockllm.HeaderChunks+": 6\r\n"+mockllm.HeaderDelayMs+": 400\r\n"))
	if stream.StatusCode != 200 {
		t.Fatalf("stream: %d", stream.StatusCode)
	}
	if _, err := stream.Body.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	beginShutdown(t, r)
	for deadline := time.Now().Add(10 * time.Second); r.app.relay.Ready() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the server has begun its own shutdown, before the fix
	refused("on a connection idle at the signal", send(idle, idleR, keepAlive("")))
	if _, err := io.Copy(io.Discard, stream.Body); err != nil {
		t.Fatalf("the stream in flight: %v", err)
	}
	stream.Body.Close()
	refused("after a stream that ended in the drain", send(streaming, streamingR, keepAlive("")))
}
