package app

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDrainEndAnswersUnfinishedUpload: an upload still arriving when the
// grace period is over is answered 503 shutting_down, with its id and its
// row, before the relay exits; the server's shutdown left its connection
// open and the process exited under it (the client got a broken pipe, the
// request no row). The read timeout is far longer than the test waits:
// only the drain's end can answer it in time.
func TestDrainEndAnswersUnfinishedUpload(t *testing.T) {
	t.Run("new connection", func(t *testing.T) { drainEndUpload(t, false) })
	// The connection's next request after a detached stream (testConfig
	// detaches every one), read by the detached writer's server.
	t.Run("after a detached stream", func(t *testing.T) { drainEndUpload(t, true) })
}

func drainEndUpload(t *testing.T, afterStream bool) {
	r := startRelayWith(t, "", func(c *Config) {
		c.Server.ShutdownGrace = time.Second
		c.Server.ReadTimeout = 5 * time.Minute
	})
	addr := strings.TrimPrefix(r.base, "http://")
	body := `{"model":"gpt-slow-upload","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("x", 4000) + `"}]}`
	full := relayReq("/v1/chat/completions", "", body)
	split := len(full) - len(body) + 100 // the head and the body's first 100 bytes
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
	if afterStream {
		streamFirst(t, c, br)
	}
	if _, err := io.WriteString(c, full[:split]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the head read: the request has begun
	stopped, shutErr := beginShutdown(t, r)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer to an upload unfinished at the drain's end: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	id := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != 503 || !strings.Contains(string(b), "shutting_down") || id == "" || !resp.Close {
		t.Fatalf("answered %d, id %q, close %v: %s; want 503 shutting_down with an id, saying close", resp.StatusCode, id, resp.Close, b)
	}
	if row := r.rows.wait(t, id); row.Status != 503 || row.ErrorType != "shutting_down" || row.Tenant != "test-tenant" {
		t.Errorf("row %d %q tenant %q, want 503 shutting_down of the key's tenant", row.Status, row.ErrorType, row.Tenant)
	}
	select {
	case <-stopped:
		if *shutErr != nil {
			t.Errorf("Shutdown: %v", *shutErr)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Shutdown did not return")
	}
}

// TestEdgeSetForgetsClosed: the set of open client connections the drain
// sweeps lets each go when it closes, whichever side closed it: it does
// not grow with the connections a relay has served.
func TestEdgeSetForgetsClosed(t *testing.T) {
	r := startRelay(t, "")
	addr := strings.TrimPrefix(r.base, "http://")
	for i := range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if i%2 == 0 {
			_, _ = io.WriteString(c, relayReq("/v1/chat/completions", "", `{"model":"m","stream":true}`))
			_, _ = io.ReadAll(c) // the relay closes it (Connection: close)
		}
		c.Close()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r.app.edges.mu.Lock()
		n := len(r.app.edges.m)
		r.app.edges.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 20 closed connections still in the set", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
