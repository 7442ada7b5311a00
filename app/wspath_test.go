package app

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// TestWSRawPathReachesUpstream: a WebSocket route sends the handshake's
// path upstream by the rule of an HTTP route (TestRawPathReachesUpstream):
// as the client sent it (%2F stays %2F, "//" stays), behind the upstream
// URL's base path; the routed path when the route's own part is not
// spelled out; a path with a dot segment is refused with 400 bad_request,
// a message naming the request path and a row, and reaches no upstream.
func TestWSRawPathReachesUpstream(t *testing.T) {
	addr, targets := servicetest.WSTarget(t, func(c *websocket.Conn) {
		_ = c.WriteMessage(websocket.TextMessage, []byte("hello"))
		_, _, _ = c.ReadMessage() // until the client closes
	})
	r := startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "storage:\n", `  - name: realtime
    path: /v1/realtime/*
    upstream: ws://`+addr+`/base
    auth_env: TEST_PROVIDER_KEY
    kind: ws
`+"storage:\n", 1)
	}, nil)
	relayWS := strings.Replace(r.base, "http://", "ws://", 1)
	hdr := http.Header{"Authorization": {"Bearer " + relayKey}}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}

	for _, tc := range []struct{ target, want string }{
		{"/v1/realtime/models%2Fgpt-x?model=m", "/base/v1/realtime/models%2Fgpt-x?model=m"},
		{"/v1/realtime/a%20b%2520c", "/base/v1/realtime/a%20b%2520c"},
		{"/v1/realtime/x//y", "/base/v1/realtime/x//y"},
		// The route's own part not spelled out: the routed path goes.
		{"/v1%2Frealtime/x", "/base/v1/realtime/x"},
	} {
		c, resp, err := d.Dial(relayWS+tc.target, hdr)
		if err != nil {
			t.Errorf("%s: dial: %v (%v)", tc.target, err, resp)
			continue
		}
		servicetest.WantTarget(t, targets, tc.target, tc.want)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, m, err := c.ReadMessage(); err != nil || string(m) != "hello" {
			t.Errorf("%s: first message %q, %v", tc.target, m, err)
		}
		c.Close()
	}

	for _, target := range []string{
		"/v1/realtime/x/%2e%2e/y",
		"/v1/realtime/x/%2E%2e%2fy",
		"/v1/realtime/x/y%2F..%2Fz",
		"/v1/realtime/x/..;/y",
		"/v1/realtime/x/.",
	} {
		c, resp, err := d.Dial(relayWS+target, hdr)
		if err == nil {
			c.Close()
			t.Errorf("%s: the session opened", target)
			continue
		}
		if resp == nil {
			t.Errorf("%s: no answer: %v", target, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body := string(b)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `"type":"bad_request","message":"route realtime: the request path`) {
			t.Errorf("%s: %d %s, want 400 bad_request naming the request path", target, resp.StatusCode, body)
			continue
		}
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if row.Status != http.StatusBadRequest || row.ErrorType != record.ErrBadRequest || row.Route != "realtime" || row.KeyID == "" {
			t.Errorf("%s: row %d %q route %q key %q", target, row.Status, row.ErrorType, row.Route, row.KeyID)
		}
	}
	select {
	case got := <-targets:
		t.Errorf("a refused path reached the upstream: %q", got)
	case <-time.After(100 * time.Millisecond):
	}
}
