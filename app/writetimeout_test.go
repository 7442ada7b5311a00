package app

import (
	"errors"
	"io"
	"net"
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
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /no/such/route HTTP/1.1\r\nHost: relay\r\n\r\n")
	pipelined := []byte(strings.Repeat(string(req), 1000))
	// Until the relay stops reading (its answers fill the buffers first),
	// at most 200 MB of requests.
	for sent := 0; ; sent += len(pipelined) {
		if sent > 200<<20 {
			t.Fatalf("sent %d bytes of requests: the relay read them all, its answers never filling the buffers", sent)
		}
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write(pipelined); errors.Is(err, os.ErrDeadlineExceeded) {
			break
		} else if err != nil {
			t.Fatalf("after %d bytes of requests: %v", sent, err)
		}
	}
	// Alive, a connection takes a write or times out (its buffers full);
	// closed by the relay (a reset: requests it had not read), it fails.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := c.Write(req)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Logf("the relay closed the connection: %v", err)
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay still holds a connection whose client has taken nothing for a minute (server.idle_timeout 2s)")
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
