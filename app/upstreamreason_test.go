package app

import (
	"io"
	"net"
	"strings"
	"testing"
)

// TestUpstreamReasonPhrase: an upstream's status code that fasthttp has no
// reason phrase for (Anthropic's 529 "Overloaded") reaches the client with
// the upstream's own phrase, made safe, and its body; a known code keeps
// its standard phrase. On the server's goroutine and detached alike.
func TestUpstreamReasonPhrase(t *testing.T) {
	const body = `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`
	for _, tt := range []struct{ line, want string }{
		{"HTTP/1.1 529 Overloaded", "HTTP/1.1 529 Overloaded"},
		{"HTTP/1.1 529 Over\x01loaded\rX-Injected: 1", "HTTP/1.1 529 Over loaded X-Injected: 1"},
		{"HTTP/1.1 503 Busy Now", "HTTP/1.1 503 Service Unavailable"},
	} {
		for _, detach := range []string{"0", "100000"} {
			t.Run(strings.Fields(tt.line)[1]+"/detach_above "+detach, func(t *testing.T) {
				up := rawTarget(t, func(c net.Conn, _ []byte) {
					_, _ = io.WriteString(c, tt.line+"\r\nContent-Type: application/json\r\nContent-Length: "+
						itoa(len(body))+"\r\n\r\n"+body)
				})
				t.Setenv("TEST_PROVIDER_KEY", providerKey)
				y := poolConfig(t, `
  - name: one
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstreams:
      - {name: only, url: "`+up+`"}
`, "rate_limit: {disabled: true}")
				p := startPool(t, strings.Replace(y, "  shutdown_grace: 5s", "  shutdown_grace: 5s\n  detach_above: "+detach, 1))
				a := postClose(t, p.base, cutBody(100))
				line, _, _ := strings.Cut(a.raw, "\r\n")
				if line != tt.want {
					t.Errorf("status line %q, want %q", line, tt.want)
				}
				if a.body != body || a.header.Get("X-Injected") != "" {
					t.Errorf("body %q, X-Injected %q: want the upstream's body and no such header", a.body, a.header.Get("X-Injected"))
				}
			})
		}
	}
}
