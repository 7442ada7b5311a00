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

	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
)

// TestIdleWait: a detached stream whose events come server.idle_wait or
// more apart waits for each next one without a goroutine, its upstream
// socket in the relay's own epoll set (upstream/idlewait.go), and is
// otherwise the same stream: every event in order, in its row too, and
// the keep-alive connection serves the next request. A stream cut while
// it waits so is cut as before: silent past the route's idle timeout it
// ends with upstream_timeout, and a client that leaves ends it with
// client_closed. /metrics shows the streams waiting so and the waits. With
// idle_wait negative no stream waits so.
func TestIdleWait(t *testing.T) {
	r := startRelayWith(t, "", func(c *Config) {
		c.Server.IdleWait = time.Nanosecond // every wait after the first event
		for i := range c.Routes {
			c.Routes[i].IdleTimeout = 1500 * time.Millisecond
		}
	})
	addr := strings.TrimPrefix(r.base, "http://")
	request := func(hdr string) string {
		body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
		return "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
			"\r\nContent-Type: application/json\r\n" + hdr + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		return c, bufio.NewReader(c)
	}

	// silent starts a stream that falls silent for 20 s after its first
	// event; before is the idle set's count of waits before it.
	silent := func() (c net.Conn, resp *http.Response, before uint64) {
		t.Helper()
		c, br := dial()
		before = upstream.IdleWaits()
		if _, err := io.WriteString(c, request("X-Mock-Chunks: 3\r\nX-Mock-Delay-Ms: 20000\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, resp, before
	}

	t.Run("whole", func(t *testing.T) {
		c, br := dial()
		before := upstream.IdleWaits()
		for i := range 2 {
			if _, err := io.WriteString(c, request("X-Mock-Chunks: 6\r\nX-Mock-Delay-Ms: 40\r\n")); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("stream %d: %v", i, err)
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK || bytes.Count(got, []byte("data: ")) < 7 || resp.Close {
				t.Fatalf("stream %d: status %d, close %v, %v, %q", i, resp.StatusCode, resp.Close, err, got)
			}
			row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
			if row.Status != http.StatusOK || row.ErrorType != "" || strings.Join(row.Chunks, "") != string(got) {
				t.Fatalf("stream %d: row status %d error %q, chunks %q, response %q", i, row.Status, row.ErrorType, row.Chunks, got)
			}
		}
		// Six events 40 ms apart: at least five waits each, without a goroutine.
		if waits := upstream.IdleWaits() - before; waits < 10 {
			t.Errorf("%d waits in the idle set for two streams of six events 40 ms apart, want at least 10", waits)
		}
	})

	t.Run("silent past the idle timeout", func(t *testing.T) {
		_, resp, before := silent()
		got, _ := io.ReadAll(resp.Body) // cut: the chunked body ends early
		if resp.StatusCode != http.StatusOK || !bytes.Contains(got, []byte("data: ")) {
			t.Fatalf("status %d, %q", resp.StatusCode, got)
		}
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if row.ErrorType != record.ErrUpstreamTimeout {
			t.Errorf("row error %q, want %q", row.ErrorType, record.ErrUpstreamTimeout)
		}
		if upstream.IdleWaits() == before {
			t.Error("the silent stream never waited in the idle set")
		}
	})

	t.Run("client leaves", func(t *testing.T) {
		c, resp, before := silent()
		id := resp.Header.Get("X-Request-Id")
		line, err := bufio.NewReader(resp.Body).ReadString('\n')
		if err != nil || !strings.Contains(line, "data: ") {
			t.Fatalf("first event: %q, %v", line, err)
		}
		// The stream is in the set: /metrics counts it (relay_idle_streams)
		// and its wait (relay_idle_waits_total).
		for deadline := time.Now().Add(10 * time.Second); ; {
			m := getMetrics(t, r.base+"/metrics")
			if m["relay_idle_streams"] >= 1 && m["relay_idle_waits_total"] > float64(before) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the stream never waited in the idle set: relay_idle_streams %v, relay_idle_waits_total %v (%d before)",
					m["relay_idle_streams"], m["relay_idle_waits_total"], before)
			}
			time.Sleep(5 * time.Millisecond)
		}
		c.Close()
		if row := r.rows.wait(t, id); row.ErrorType != record.ErrClientClosed {
			t.Errorf("row error %q, want %q", row.ErrorType, record.ErrClientClosed)
		}
	})

	t.Run("never with idle_wait negative", func(t *testing.T) {
		r := startRelayWith(t, "", func(c *Config) { c.Server.IdleWait = -1 })
		before := upstream.IdleWaits()
		resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true}`, map[string]string{"X-Mock-Chunks": "4", "X-Mock-Delay-Ms": "30"})
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || bytes.Count(got, []byte("data: ")) < 5 {
			t.Fatalf("%v, %q", err, got)
		}
		if waits := upstream.IdleWaits() - before; waits != 0 {
			t.Errorf("%d waits in the idle set with idle_wait -1", waits)
		}
	})
}
