package app

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/record"
)

// TestUpstreamCutBeforeBody: an upstream that sends its head and then
// resets (or stays silent past idle_timeout) before the first byte of its
// body leaves the client the relay's own error answer, with its request id,
// instead of an empty reply; the row says what the client got. On the
// server's goroutine, detached, and to an HTTP/1.0 client alike.
func TestUpstreamCutBeforeBody(t *testing.T) {
	for _, detach := range []string{"0", "100000"} {
		r := startRelayYAML(t, func(y string) string {
			return strings.Replace(y, "detach_above: 0", "detach_above: "+detach, 1)
		}, nil)
		for _, tt := range []struct {
			name, proto, ctl string
			status           int
			errType          string
		}{
			{"reset", "HTTP/1.1", mockllm.HeaderResetAfter + ": 0", 502, record.ErrUpstreamReset},
			{"reset, HTTP/1.0", "HTTP/1.0", mockllm.HeaderResetAfter + ": 0", 502, record.ErrUpstreamReset},
			{"silent", "HTTP/1.1", mockllm.HeaderStallAfter + ": 0", 504, record.ErrUpstreamTimeout}, // testConfig: idle_timeout 2s
		} {
			t.Run("detach_above "+detach+"/"+tt.name, func(t *testing.T) {
				c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				body := `{"model":"m","stream":true}`
				req := "POST /v1/chat/completions " + tt.proto + "\r\nHost: x\r\nAuthorization: Bearer " + relayKey + "\r\n" + tt.ctl +
					"\r\nContent-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
				if _, err := io.WriteString(c, req); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("no answer: %v", err)
				}
				answer := readAll(t, resp)
				var e struct {
					Error struct{ Type, Message string } `json:"error"`
				}
				if resp.StatusCode != tt.status || json.Unmarshal([]byte(answer), &e) != nil || e.Error.Type != tt.errType {
					t.Fatalf("status %d: %s", resp.StatusCode, answer)
				}
				row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
				if row.Status != tt.status || row.ErrorType != tt.errType || row.BytesOut != 0 {
					t.Errorf("row status %d error %q bytes_out %d", row.Status, row.ErrorType, row.BytesOut)
				}
			})
		}
	}
}
