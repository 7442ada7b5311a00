package app

import (
	"encoding/json"
	"strings"
	"testing"

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
		r := startRelayDetachAbove(t, detach)
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
				resp, _ := rawPost(t, r.base, tt.proto, "/v1/chat/completions", tt.ctl+"\r\n", `{"model":"m","stream":true}`)
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
				// The headers of the answer the client got, not the
				// upstream's head it never saw.
				if !strings.Contains(row.RespHeaders, `"content-type":"application/json"`) || strings.Contains(row.RespHeaders, "event-stream") {
					t.Errorf("row response headers %s", row.RespHeaders)
				}
			})
		}
	}
}
