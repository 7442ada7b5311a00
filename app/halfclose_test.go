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

// TestHalfClosedClientSucceeds: a client that closes only its sending side
// after its request (a half-close) and reads the whole answer is stored as
// the success it is.
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
