package app

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

// TestClientThatTakesNothingIsLetGo: a client that pipelines requests and
// reads none of the answers fills the kernel's buffers, and the relay's
// write of its next answer blocks. The relay closes such a connection once
// an answer has waited server.idle_timeout; it used to hold it, its
// goroutine and megabytes of send buffer for as long as the client stayed.
func TestClientThatTakesNothingIsLetGo(t *testing.T) {
	r := startRelayWith(t, "", func(c *Config) { c.Server.IdleTimeout = 2 * time.Second })
	c := dialSmallWindow(t, strings.TrimPrefix(r.base, "http://"))
	req := []byte("GET /no/such/route HTTP/1.1\r\nHost: relay\r\n\r\n")
	fillUntilBlocked(t, c, []byte(strings.Repeat(string(req), 1000)))
	waitClosedByRelay(t, c, req, "a client that has taken nothing for a minute (server.idle_timeout 2s)")
}

// dialSmallWindow connects to addr with a small receive buffer, so that
// the relay's answers, unread, fill it soon.
func dialSmallWindow(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fillUntilBlocked writes pipelined requests to c until the relay stops
// reading them (its answers, unread, filled the buffers first), at most
// 200 MB.
func fillUntilBlocked(t *testing.T, c net.Conn, pipelined []byte) {
	t.Helper()
	for sent := 0; ; sent += len(pipelined) {
		if sent > 200<<20 {
			t.Fatalf("sent %d bytes of requests: the relay read them all, its answers never filling the buffers", sent)
		}
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(pipelined); errors.Is(err, os.ErrDeadlineExceeded) {
			return
		} else if err != nil {
			t.Fatalf("after %d bytes of requests: %v", sent, err)
		}
	}
}

// waitClosedByRelay waits up to a minute for the relay to close c: alive,
// a connection takes a write or times out (its buffers full); closed by
// the relay (a reset: requests it had not read), it fails.
func waitClosedByRelay(t *testing.T, c net.Conn, req []byte, who string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := c.Write(req)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Logf("the relay closed the connection: %v", err)
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay still holds the connection of " + who)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestStreamOutlastsServerWriteTimeout: the server's write timeout bounds
// the relay's own answers; a stream that takes longer than it, its writes
// each well within the route's idle_timeout, is not cut by it, written on
// the server's goroutine or detached.
func TestStreamOutlastsServerWriteTimeout(t *testing.T) {
	for _, detach := range []string{"0", "100000"} {
		t.Run("detach_above "+detach, func(t *testing.T) {
			r := startRelayYAML(t, func(y string) string {
				return strings.Replace(y, "detach_above: 0", "detach_above: "+detach, 1)
			}, func(c *Config) { c.Server.IdleTimeout = time.Second })
			resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true}`, map[string]string{
				mockllm.HeaderChunks: "25", mockllm.HeaderDelayMs: "100", // 2.5 s of stream
			})
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatalf("stream cut after %d bytes: %v", len(body), err)
			}
			row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
			if ev := sseEvents(string(body)); len(ev) != 28 || ev[len(ev)-1] != "[DONE]" || row.ErrorType != "" {
				t.Fatalf("%d events (last %q), row error %q", len(ev), ev[len(ev)-1], row.ErrorType)
			}
		})
	}
}

// TestStreamLastFlushHasDeadline: a stream's last bytes leave in the flush
// fasthttp makes after the stream ended (an answer that came whole: all
// of it), when the stream is no longer the watchdog's. A client that
// pipelines such requests and reads nothing fills the buffers until one
// of those flushes blocks; the route's idle_timeout bounds it, and the
// relay closes the connection. It used to hold it for ever.
func TestStreamLastFlushHasDeadline(t *testing.T) {
	// Each answer chunked (no length), head and body in one write.
	event := "data: " + strings.Repeat("x", 2900) + "\n\n"
	up := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, event)
	})}
	uln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = up.Serve(uln) }()
	t.Cleanup(func() { _ = up.Close() })
	r := startRelayYAML(t, func(y string) string {
		y = strings.Replace(y, "detach_above: 0", "detach_above: 100000", 1) // on the server's goroutine
		return strings.Replace(y, "storage:\n", `  - name: whole
    path: /whole
    upstream: http://`+uln.Addr().String()+`
    auth_env: TEST_PROVIDER_KEY
    idle_timeout: 2s
storage:
`, 1)
	}, nil)
	c := dialSmallWindow(t, strings.TrimPrefix(r.base, "http://"))
	req := "POST /whole HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey + "\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
	fillUntilBlocked(t, c, []byte(strings.Repeat(req, 100)))
	waitClosedByRelay(t, c, []byte(req), "a client that stopped taking streamed answers (route idle_timeout 2s)")
}

// TestAnswerAfterIdleKeepsItsOwnDeadline: on a kept connection, fasthttp's
// answer to a request whose body it could not read comes before that
// request's own write deadline is set; under the last answer's, passed
// while the body came, it failed and the connection closed without an
// answer (server.idle_timeout 1 s, the body too large after 2 s).
func TestAnswerAfterIdleKeepsItsOwnDeadline(t *testing.T) {
	r := startRelayWith(t, "", func(c *Config) {
		c.Server.IdleTimeout, c.Server.ReadTimeout = time.Second, 20*time.Second
	})
	c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	_, _ = io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+"\r\nTransfer-Encoding: chunked\r\n\r\n")
	time.Sleep(2 * time.Second) // past the healthz answer's deadline
	go func() {                 // testConfig: max_body_bytes 65536
		_, _ = io.WriteString(c, "11000\r\n"+strings.Repeat("b", 0x11000)+"\r\n0\r\n\r\n")
	}()
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to a body too large after the connection idled: %v", err)
	}
	readAll(t, resp)
	if resp.StatusCode != 413 || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("status %d, X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
}
