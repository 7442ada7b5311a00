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
