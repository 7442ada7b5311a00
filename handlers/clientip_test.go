package handlers

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestClientIP(t *testing.T) {
	proxies, err := ParseProxies([]string{"10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::ffff:172.16.0.0/108", "::ffff:198.18.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, peer string
		xff        []string // X-Forwarded-For lines, in order
		trusted    bool     // the relay has trusted proxies
		want       string
	}{
		{"no proxies configured", "10.1.2.3", []string{"203.0.113.7"}, false, "10.1.2.3"},
		{"peer not a proxy: its word ignored", "198.51.100.9", []string{"203.0.113.7"}, true, "198.51.100.9"},
		{"one proxy", "10.1.2.3", []string{"203.0.113.7"}, true, "203.0.113.7"},
		{"chain of proxies", "10.1.2.3", []string{"203.0.113.7, 192.0.2.1, 10.9.9.9"}, true, "203.0.113.7"},
		{"spoofed entry left of the client", "10.1.2.3", []string{"1.1.1.1, 203.0.113.7"}, true, "203.0.113.7"},
		{"several header lines", "10.1.2.3", []string{"1.1.1.1", "203.0.113.7, 10.0.0.5"}, true, "203.0.113.7"},
		{"every entry a proxy", "10.1.2.3", []string{"10.0.0.1, 10.0.0.2"}, true, "10.0.0.1"},
		{"no header", "10.1.2.3", nil, true, "10.1.2.3"},
		{"malformed entry", "10.1.2.3", []string{"203.0.113.7, garbage, 10.0.0.4"}, true, "10.0.0.4"},
		{"entry with a port", "10.1.2.3", []string{"203.0.113.7:41000"}, true, "203.0.113.7"},
		{"IPv6 with a port", "10.1.2.3", []string{"[2001:db9::1]:443"}, true, "2001:db9::1"},
		{"IPv6 proxy", "2001:db8::5", []string{"203.0.113.8"}, true, "203.0.113.8"},
		{"IPv4-mapped entry", "10.1.2.3", []string{"::ffff:203.0.113.9"}, true, "203.0.113.9"},
		{"proxy given IPv4-mapped, as a prefix", "172.16.4.4", []string{"203.0.113.10"}, true, "203.0.113.10"},
		{"proxy given IPv4-mapped", "198.18.0.1", []string{"203.0.113.11"}, true, "203.0.113.11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Relay{}
			if tt.trusted {
				h.o.TrustedProxies = proxies
			}
			var req fasthttp.Request
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			var ctx fasthttp.RequestCtx
			ctx.Init(&req, &net.TCPAddr{IP: net.ParseIP(tt.peer), Port: 5555}, nil)
			if got := h.clientIP(&ctx); got != tt.want {
				t.Errorf("clientIP = %q; want %q", got, tt.want)
			}
		})
	}
}

func TestParseProxiesNamesBadEntry(t *testing.T) {
	if _, err := ParseProxies([]string{"10.0.0.0/8", "not-an-ip"}); err == nil {
		t.Fatal("a bad entry parsed")
	}
}
