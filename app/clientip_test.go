package app

import (
	"strings"
	"testing"
)

// TestTrustedProxyClientIP: behind a trusted load balancer a row's
// client_ip is the client X-Forwarded-For names (the rightmost entry that
// is no proxy), not the balancer's address; without trusted_proxies the
// header is the client's word and the peer's address stays.
func TestTrustedProxyClientIP(t *testing.T) {
	up, _ := liveTarget(t)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	routes := `
  - name: chat
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstream: ` + up + `
`
	for _, tt := range []struct {
		name    string
		trusted bool
		want    string
	}{
		{"trusted", true, "203.0.113.7"},
		{"not trusted", false, "127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			y := poolConfig(t, routes, "rate_limit: {disabled: true}")
			if tt.trusted {
				y = strings.Replace(y, "server:\n", "server:\n  trusted_proxies: [127.0.0.1, 10.0.0.0/8]\n", 1)
			}
			p := startPool(t, y)
			c := dialChat(t, p.base, chatBody, "X-Forwarded-For: 198.51.100.1, 203.0.113.7, 10.0.0.9\r\nConnection: close\r\n")
			defer c.Close()
			if r := waitPoolRows(t, p, 1)[0]; r.ClientIP != tt.want {
				t.Errorf("client_ip %q; want %q", r.ClientIP, tt.want)
			}
		})
	}
}

func TestTrustedProxiesRefusesBadEntry(t *testing.T) {
	_, err := Parse([]byte("server:\n  trusted_proxies: [10.0.0.0/8, lb.internal]\n"))
	if err == nil || !strings.Contains(err.Error(), "server.trusted_proxies[1]") {
		t.Fatalf("err %v; want one naming server.trusted_proxies[1]", err)
	}
}
