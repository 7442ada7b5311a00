package app

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// wssRelay starts a relay with a ws route to wss://addr: connect_timeout
// 1s, first_byte_timeout 30s.
func wssRelay(t *testing.T, addr string) *relay {
	t.Helper()
	return startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "storage:\n", "  - name: realtime\n    path: /v1/realtime\n    upstream: wss://"+addr+
			"\n    auth_env: TEST_PROVIDER_KEY\n    kind: ws\n    connect_timeout: 1s\n    first_byte_timeout: 30s\nstorage:\n", 1)
	}, nil)
}

// TestWSSUpstreamTLSFailures: a wss upstream whose TLS handshake fails (a
// certificate that does not verify) or never ends is a failed connect, as
// on an HTTP route: 502 upstream_connect, and 504 upstream_connect at
// connect_timeout. They were upstream_reset ("closed the connection before
// answering") and a wait of first_byte_timeout.
func TestWSSUpstreamTLSFailures(t *testing.T) {
	t.Run("certificate not trusted", func(t *testing.T) {
		up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		t.Cleanup(up.Close)
		r := wssRelay(t, strings.TrimPrefix(up.URL, "https://"))
		_, resp, err := dialWS(t, r.base, relayKey, nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("handshake: %v %v; want 502", err, resp)
		}
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if row.ErrorType != record.ErrUpstreamConnect {
			t.Errorf("row error_type %q; want %s", row.ErrorType, record.ErrUpstreamConnect)
		}
	})
	t.Run("handshake never ends", func(t *testing.T) {
		r := wssRelay(t, servicetest.SilentListener(t)) // silent: no TLS
		start := time.Now()
		_, resp, err := dialWS(t, r.base, relayKey, nil) // the client waits 5 s
		if err == nil || resp == nil || resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("handshake after %s: %v %v; want 504 at connect_timeout (1s)", time.Since(start), err, resp)
		}
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if row.ErrorType != record.ErrUpstreamConnect {
			t.Errorf("row error_type %q; want %s", row.ErrorType, record.ErrUpstreamConnect)
		}
	})
}

// TestEjectionSaysWhyTheConnectFailed: a target ejected because its TLS
// certificate does not verify is logged with what TLS said; the log said
// upstream_connect, as for a refused port.
func TestEjectionSaysWhyTheConnectFailed(t *testing.T) {
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(up.Close)
	live, _ := liveTarget(t)
	var log servicetest.Buffer
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPoolLog(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    health: {max_fails: 1, cooldown: 1h}
    upstreams:
      - {name: tls, url: "`+up.URL+`", weight: 1000000}
      - {name: live, url: "`+live+`"}
`, "rate_limit: {disabled: true}"), &log)
	if a := postClose(t, p.base, cutBody(100)); a.status != 200 {
		t.Fatalf("status %d; want 200 from the live target", a.status)
	}
	waitPoolRows(t, p, 1)
	if s := log.String(); !strings.Contains(s, "upstream target ejected") || !strings.Contains(s, "x509") {
		t.Fatalf("log %q; want the ejection with what TLS said (x509)", s)
	}
}
