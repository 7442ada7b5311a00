package app

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startRefusingWSUpstream starts an upstream that answers every handshake
// with status, repeating the request's URL in a Location field and in its
// body (as a trailing-slash redirect or an error that quotes the request
// does), with X-RateLimit-Remaining: 0.
func startRefusingWSUpstream(t *testing.T, status int) string {
	t.Helper()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", r.URL.RequestURI())
		w.Header().Set("X-RateLimit-Remaining", "0")
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		_, _ = w.Write([]byte("no session at " + r.URL.RequestURI() + " for " + r.Header.Get("Authorization")))
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestWSRefusalMasksProviderKey: an upstream's refusal that repeats the
// request reaches the client, and the row, without the provider key, which
// a ws route sends in the URL (auth_query) or a header.
func TestWSRefusalMasksProviderKey(t *testing.T) {
	for _, tt := range []struct {
		name, extra string
		status      int
	}{
		{"auth_query redirect", "    auth_query: api_key\n", http.StatusTemporaryRedirect},
		{"auth_query 422", "    auth_query: api_key\n", http.StatusUnprocessableEntity},
		{"header 401", "", http.StatusUnauthorized},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := &wsUpstream{base: startRefusingWSUpstream(t, tt.status)}
			r := startWSRelay(t, up, tt.extra, nil)
			want := tt.status
			if want < 400 {
				want = http.StatusBadGateway // what a ws route answers to a redirect
			}
			_, resp, err := dialWS(t, r.base, relayKey, nil)
			if err == nil || resp == nil || resp.StatusCode != want {
				t.Fatalf("refused handshake: %v %v", err, resp)
			}
			body := readAll(t, resp)
			if !strings.Contains(body, "no session at /v1/realtime") {
				t.Fatalf("the client did not get the upstream's answer: %q", body)
			}
			row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
			for what, s := range map[string]string{
				"client's Location": resp.Header.Get("Location"),
				"client's body":     body,
				"row's headers":     row.RespHeaders,
				"row's chunks":      strings.Join(row.Chunks, ""),
			} {
				if strings.Contains(s, providerKey) {
					t.Errorf("%s holds the provider key: %q", what, s)
				}
			}
			if tt.extra != "" && !strings.Contains(resp.Header.Get("Location"), "api_key=[redacted]") {
				t.Errorf("Location %q: want the key's parameter masked", resp.Header.Get("Location"))
			}
		})
	}
}

// TestWSUpstreamRateLimitHeadersRenamed: a ws route's answers carry the
// relay's own X-RateLimit-* fields, and the upstream's go as
// X-Upstream-RateLimit-*, as on HTTP routes (one value each, not both
// under one name).
func TestWSUpstreamRateLimitHeadersRenamed(t *testing.T) {
	up := &wsUpstream{base: startRefusingWSUpstream(t, http.StatusTooManyRequests)}
	mutate, _ := withLimits("", 100, 100)
	r := startWSRelay(t, up, "", mutate)
	_, resp, err := dialWS(t, r.base, relayKey, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("refused handshake: %v %v", err, resp)
	}
	readAll(t, resp)
	own, theirs := resp.Header.Values("X-RateLimit-Remaining"), resp.Header.Values("X-Upstream-RateLimit-Remaining")
	if len(own) != 1 || own[0] == "0" || len(theirs) != 1 || theirs[0] != "0" {
		t.Fatalf("X-RateLimit-Remaining %q, X-Upstream-RateLimit-Remaining %q: want the relay's own and the upstream's 0 apart", own, theirs)
	}
}
