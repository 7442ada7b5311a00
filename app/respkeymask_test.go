package app

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestResponseHeadersMaskProviderKey: an upstream that repeats the request
// in its answer's headers (a debugging header echoing Authorization, a
// redirect quoting it) does not hand the provider key to the client or the
// row: both get "[redacted]" where the key was, the other headers as they
// came. (WebSocket refusals were masked; HTTP routes passed it on.)
func TestResponseHeadersMaskProviderKey(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		w.Header().Add("X-Echo-Authorization", auth)
		w.Header().Add("X-Echo-Authorization", "second value")
		w.Header().Set("X-Plain", "kept")
		w.Header().Set("Location", "http://elsewhere/?k="+strings.TrimPrefix(auth, "Bearer "))
		w.WriteHeader(http.StatusFound)
		_, _ = w.Write([]byte("moved"))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: echo
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstream: http://`+ln.Addr().String()+`
`, "rate_limit: {disabled: true}"))
	a := postClose(t, p.base, cutBody(100))
	if a.status != http.StatusFound {
		t.Fatalf("status %d: %q", a.status, a.raw)
	}
	if strings.Contains(a.raw, providerKey) {
		t.Fatalf("the client got the provider key: %q", a.raw)
	}
	if got := a.header.Values("X-Echo-Authorization"); len(got) != 2 || got[0] != "Bearer [redacted]" || got[1] != "second value" {
		t.Errorf("X-Echo-Authorization %q; want the key masked, both values in order", got)
	}
	if got := a.header.Get("Location"); got != "http://elsewhere/?k=[redacted]" {
		t.Errorf("Location %q; want the key masked", got)
	}
	if got := a.header.Get("X-Plain"); got != "kept" {
		t.Errorf("X-Plain %q; want it as it came", got)
	}
	r := waitPoolRows(t, p, 1)[0]
	if strings.Contains(r.RespHeaders, providerKey) || !strings.Contains(r.RespHeaders, "[redacted]") {
		t.Errorf("row's response headers %s: want the key masked", r.RespHeaders)
	}
}

// TestNoContentTypeInvented: an upstream answer without Content-Type
// reaches the client and the row without one; fasthttp's default
// (text/plain; charset=utf-8) was added as if the upstream had sent it.
func TestNoContentTypeInvented(t *testing.T) {
	up := rawTarget(t, func(c net.Conn, _ []byte) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	})
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: plain
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstream: `+up+`
`, "rate_limit: {disabled: true}"))
	a := postClose(t, p.base, cutBody(100))
	if a.status != 200 || a.body != "hello" {
		t.Fatalf("status %d body %q", a.status, a.body)
	}
	if strings.Contains(strings.ToLower(a.raw), "content-type") {
		t.Errorf("the client got a Content-Type the upstream never sent: %q", a.raw)
	}
	if r := waitPoolRows(t, p, 1)[0]; strings.Contains(r.RespHeaders, "content-type") {
		t.Errorf("row's response headers %s: a content-type the upstream never sent", r.RespHeaders)
	}
}
