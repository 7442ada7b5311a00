package app

import (
	"strings"
	"testing"
)

// TestModelPastCaptureLimit: a request whose model comes after more
// messages than the route captures (an image first, as the OpenAI SDKs
// order a body) keeps its model in the row, with capture on and off.
// finish looked for it in the captured head only.
func TestModelPastCaptureLimit(t *testing.T) {
	up, _ := liveTarget(t)
	body := `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,` +
		strings.Repeat("iVBORw0KGgo", 20<<10) + `"}}]}],"model":"gpt-4o","stream":true}`
	for _, capture := range []string{"full", "meta"} {
		t.Run(capture, func(t *testing.T) {
			p := chatPool(t, up, "    capture: "+capture+"\n    max_capture_bytes: 65536\n")
			c := dialChat(t, p.base, body, "Connection: close\r\n")
			defer c.Close()
			if r := waitPoolRows(t, p, 1)[0]; r.Model != "gpt-4o" {
				t.Errorf("model %q; want gpt-4o (body %d bytes, capture %s, 64 KiB kept)", r.Model, len(body), capture)
			}
		})
	}
}
