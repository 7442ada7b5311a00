package app

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestClientLeftBeforeTheEnd: a client that closes its connection in the
// middle of a stream whose rest then arrives in one read (the last, flushed
// after the record is finished) is stored as client_closed, detached or
// not: the row said a success (200, no error), and no metric counted the
// leave. A client that closes only its sending side (a half-close) and
// reads the whole answer is stored as the success it is
// (TestHalfClosedClientSucceeds).
func TestClientLeftBeforeTheEnd(t *testing.T) {
	for _, detach := range []int64{0, 128} {
		t.Run(map[int64]string{0: "detached", 128: "not detached"}[detach], func(t *testing.T) {
			left := make(chan struct{})
			addr := connTarget(t, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+
					sseChunk(`data: {"choices":[{"delta":{"role":"assistant"}}]}`+"\n\n"))
				select {
				case <-left:
				case <-time.After(20 * time.Second):
				}
				time.Sleep(200 * time.Millisecond) // the client's FIN is in
				_, _ = io.WriteString(c, sseChunk(`data: {"choices":[{"delta":{"content":"hi"}}]}`+"\n\n")+sseChunk("data: [DONE]\n\n")+"0\r\n\r\n")
			})
			r := startRelayWith(t, "", func(c *Config) {
				c.Server.DetachAbove = &detach
				c.Routes[0].Upstream = "http://" + addr
			})
			c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, relayReq("/v1/chat/completions", "", `{"model":"m","stream":true}`)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			id := resp.Header.Get("X-Request-Id")
			if _, err := resp.Body.Read(make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			close(left)
			waitFor(t, 20*time.Second, func() bool { return r.rows.count(func(x row) bool { return x.ID == id }) > 0 }, "the row")
			if rw := r.rows.wait(t, id); rw.ErrorType != record.ErrClientClosed {
				t.Errorf("row: status %d, error %q; want client_closed", rw.Status, rw.ErrorType)
			}
		})
	}
}

// sseChunk is s as one chunk of a chunked body.
func sseChunk(s string) string {
	return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n"
}

func TestHalfClosedClientSucceeds(t *testing.T) {
	for _, detach := range []int64{0, 128} {
		t.Run(map[int64]string{0: "detached", 128: "not detached"}[detach], func(t *testing.T) {
			r := startRelayWith(t, "", func(c *Config) { c.Server.DetachAbove = &detach })
			c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, relayReq("/v1/chat/completions", "X-Mock-Chunks: 3\r\nX-Mock-Delay-Ms: 100\r\n", `{"model":"m","stream":true}`)); err != nil {
				t.Fatal(err)
			}
			if err := c.(*net.TCPConn).CloseWrite(); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || !strings.Contains(string(body), "[DONE]") {
				t.Fatalf("answer %q (%v)", body, err)
			}
			if rw := r.rows.wait(t, resp.Header.Get("X-Request-Id")); rw.Status != 200 || rw.ErrorType != "" {
				t.Errorf("row: status %d, error %q; want the success", rw.Status, rw.ErrorType)
			}
		})
	}
}
