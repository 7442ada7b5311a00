//go:build !race

package upstream

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestSubprotocolCaptureAllocatesNothing: capturing a browser handshake's
// subprotocol list, its key entry and an unknown entry redacted, allocates
// nothing once the capture buffer has grown, as any other head.
func TestSubprotocolCaptureAllocatesNothing(t *testing.T) {
	r, err := NewRoute(Options{Name: "a", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-provider", KeyEnv: "K"}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	for _, protocols := range []string{
		"realtime, openai-insecure-api-key.sk-relay-1, openai-beta.realtime-v1",
		"token, dg-secret-1",
	} {
		head := "GET /v1/realtime?model=gpt-realtime HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
			"Sec-WebSocket-Protocol: " + protocols + "\r\n\r\n"
		var src fasthttp.RequestHeader
		if err := src.Read(bufioReader(head)); err != nil {
			t.Fatal(err)
		}
		capture := make([]byte, 0, 4096)
		run := func() { capture = r.CaptureRequestHeaders(capture[:0], &src) }
		run()
		if n := testing.AllocsPerRun(20, run); n != 0 {
			t.Errorf("%q: %v allocations per capture, want 0", protocols, n)
		}
		checkHeaderObject(t, capture)
	}
}
