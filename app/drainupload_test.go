package app

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDrainServesUploadUnderWay: a request whose body was still uploading
// when the relay began to drain (SIGTERM) is served within shutdown_grace,
// answer, id and row, as an in-flight stream is; it was answered 503
// shutting_down once its body was whole, the upload thrown away with grace
// left; and its stream, detached, must not be cut before the grace period
// ends. A request that begins after the drain is still refused.
func TestDrainServesUploadUnderWay(t *testing.T) {
	t.Run("new connection", func(t *testing.T) { drainUpload(t, false) })
	// The connection's next request after a detached stream, served by
	// the detached writer's server, which the drain sweeps.
	t.Run("after a detached stream", func(t *testing.T) { drainUpload(t, true) })
}

func drainUpload(t *testing.T, afterStream bool) {
	r := startRelay(t, "")
	addr := strings.TrimPrefix(r.base, "http://")
	body := `{"model":"gpt-upload","stream":true,"messages":[{"role":"user","content":"` + strings.Repeat("x", 4000) + `"}]}`
	// 20 events 100 ms apart: the answer outlasts the server's own wait
	// for its connections, which does not count a detached stream
	// (testConfig detaches every one).
	full := relayReq("/v1/chat/completions", "X-Mock-Chunks: 20\r\nX-Mock-Delay-Ms: 100\r\n", body)
	split := len(full) - len(body) + 100 // the head and the body's first 100 bytes

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if afterStream {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		streamFirst(t, c, br)
	}
	if _, err := io.WriteString(c, full[:split]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the head read: the request has begun

	a := r.app
	stopped, shutErr := beginShutdown(t, r)
	deadline := time.Now().Add(10 * time.Second)
	for a.relay.Ready() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if a.relay.Ready() {
		t.Fatal("the relay did not begin to drain")
	}

	// A request begun now, on a connection of its own: refused. (The
	// listener may be closed already: then it cannot begin at all.)
	if late, err := net.Dial("tcp", addr); err == nil {
		_ = late.SetDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.WriteString(late, relayReq("/v1/chat/completions", "", `{"model":"late","stream":true}`))
		got, _ := io.ReadAll(late)
		late.Close()
		if s := statusOf(string(got)); s != 0 && s != 503 {
			t.Errorf("a request begun after the drain: status %d, want 503 (or no connection)", s)
		}
	}

	if _, err := io.WriteString(c, full[split:]); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, _ := io.ReadAll(br)
	resp := string(got)
	if statusOf(resp) != 200 || !strings.Contains(resp, "data: [DONE]") {
		t.Fatalf("the upload under way at the drain: answered %.300q, want a whole 200 stream", resp)
	}
	m := regexp.MustCompile(`(?i)\r\nX-Request-Id: ([0-9a-f]+)\r\n`).FindStringSubmatch(resp)
	if m == nil {
		t.Fatal("no X-Request-Id")
	}
	<-stopped
	if *shutErr != nil {
		t.Errorf("shutdown: %v", *shutErr)
	}
	row := r.rows.wait(t, m[1])
	if row.Status != 200 || row.ErrorType != "" {
		t.Errorf("row: status %d error %q, want 200 and none", row.Status, row.ErrorType)
	}
}

// beginShutdown starts r's shutdown (SIGTERM's drain) and returns a channel
// closed when it returned, and where its error then is. The harness's own
// cleanup (which runs after this one) does not shut it down again.
// streamFirst sends a streamed request on c, kept alive, and reads its
// answer whole (testConfig detaches the stream): c's next request is read
// by the detached writer's server.
func streamFirst(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	first := strings.Replace(relayReq("/v1/chat/completions", "", `{"model":"first","stream":true}`), "Connection: close\r\n", "", 1)
	if _, err := io.WriteString(c, first); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != 200 || !strings.Contains(string(b), "[DONE]") {
		t.Fatalf("first stream: %d %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	time.Sleep(200 * time.Millisecond) // its connection back with a server
}

func beginShutdown(t *testing.T, r *relay) (<-chan struct{}, *error) {
	t.Helper()
	a := r.app
	var err error
	stopped := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = a.Shutdown(ctx)
		close(stopped)
	}()
	t.Cleanup(func() { <-stopped; r.app = nil })
	return stopped, &err
}
