package app

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
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
	p := chatPool(t, up, "")
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

// TestErrorBodyMasksProviderKey: an upstream whose error answer repeats
// the provider key in its body (a refusal quoting the key it got) does not
// hand it to the client or the row, however the body comes: whole with
// the head, chunked with the key split between two writes, longer than the
// relay takes in one piece, and on a raw route that splices bodies it does
// not keep. The body keeps its length (a Content-Length stays true), and
// the rest of it is as the upstream sent it.
func TestErrorBodyMasksProviderKey(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	tests := []struct {
		name, path string
		answer     func(c net.Conn)
		want       string // the body the client should get
	}{
		{"whole", "/v1/chat/completions", func(c net.Conn) {
			b := `{"error":"invalid key ` + providerKey + `"}`
			_, _ = io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: "+itoa(len(b))+"\r\n\r\n"+b)
		}, `{"error":"invalid key [redacted]************"}`},
		{"chunked split", "/v1/chat/completions", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nkey: sk-provider\r\n")
			time.Sleep(200 * time.Millisecond) // two reads for the relay
			_, _ = io.WriteString(c, "c\r\n-secret-456!\r\n0\r\n\r\n")
		}, "key: **********************!"},
		{"long", "/v1/chat/completions", func(c net.Conn) {
			b := long + providerKey + long
			_, _ = io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: "+itoa(len(b))+"\r\n\r\n"+b)
		}, long + "[redacted]************" + long},
		{"raw route", "/v1/audio/speech", func(c net.Conn) {
			b := long + providerKey + long
			_, _ = io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: "+itoa(len(b))+"\r\n\r\n")
			time.Sleep(200 * time.Millisecond) // the body after the head: spliceable
			_, _ = io.WriteString(c, b)
		}, long + "[redacted]************" + long},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := rawTarget(t, func(c net.Conn, _ []byte) { tt.answer(c) })
			t.Setenv("TEST_PROVIDER_KEY", providerKey)
			p := startPool(t, poolConfig(t, `
  - name: chat
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstream: `+up+`
  - name: speech
    path: /v1/audio/speech
    kind: raw
    auth_env: TEST_PROVIDER_KEY
    upstream: `+up+`
`, "rate_limit: {disabled: true}"))
			body := `{"model":"m","input":"hi"}`
			a := sendRaw(t, p.base, "POST "+tt.path+" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+
				"\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
			if got := a.body; got != tt.want {
				if i := strings.Index(got, providerKey[:8]); i >= 0 {
					t.Fatalf("status %d: the client got the provider key: %q", a.status, got[max(0, i-20):min(len(got), i+40)])
				}
				t.Fatalf("status %d: body of %d bytes, want %d: %.200q", a.status, len(got), len(tt.want), got)
			}
			r := waitPoolRows(t, p, 1)[0]
			if strings.Contains(r.Chunks, providerKey) || strings.Contains(r.Chunks, "secret-456") {
				t.Errorf("the row's response bytes hold the provider key")
			}
		})
	}
}

// TestNoContentTypeInventedUpstream: a request sent without Content-Type
// reaches the upstream without one; fasthttp's default
// (application/octet-stream) went upstream, unlike the row says.
func TestNoContentTypeInventedUpstream(t *testing.T) {
	got := make(chan []string, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Values("Content-Type")
		_, _ = io.WriteString(w, "{}")
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p := chatPool(t, "http://"+ln.Addr().String(), "")
	body := `{"model":"m"}`
	sendRaw(t, p.base, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+
		"\r\nConnection: close\r\nContent-Length: "+itoa(len(body))+"\r\n\r\n"+body)
	select {
	case ct := <-got:
		if len(ct) != 0 {
			t.Errorf("the upstream got Content-Type %q; the client sent none", ct)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the upstream got no request")
	}
}

// TestRouteHeaderSecretMasked: a route with no provider key whose headers
// send the credential (a self-hosted server's key, as the README shows)
// has it masked where the upstream's answer repeats it, in headers and in
// an error body, as a provider key is; it reached the client and the row
// in clear.
func TestRouteHeaderSecretMasked(t *testing.T) {
	const secret = "SELFKEY-4d3c2b1a0f9e"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"key `+r.Header.Get("X-Api-Key")+` refused"}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	// The credential in headers (a default), or in set_headers (forced).
	for _, field := range []string{"headers", "set_headers"} {
		t.Run(field, func(t *testing.T) { routeSecretMasked(t, ln.Addr().String(), field, secret) })
	}
}

func routeSecretMasked(t *testing.T, addr, field, secret string) {
	p := startPool(t, poolConfig(t, `
  - name: selfhosted
    path: /v1/chat/completions
    upstream: http://`+addr+`
    `+field+`:
      Authorization: Bearer `+secret+`
      X-Api-Key: `+secret+`
`, "rate_limit: {disabled: true}"))
	a := postClose(t, p.base, cutBody(100))
	if a.status != http.StatusUnauthorized {
		t.Fatalf("status %d: %q", a.status, a.raw)
	}
	if strings.Contains(a.raw, secret) {
		t.Errorf("the client got the route's secret: %q", a.raw)
	}
	if got := a.header.Get("X-Echo-Auth"); got != "Bearer [redacted]" {
		t.Errorf("X-Echo-Auth %q; want the secret masked", got)
	}
	r := waitPoolRows(t, p, 1)[0]
	if strings.Contains(r.RespHeaders, secret) || strings.Contains(r.Chunks, secret) || !strings.Contains(r.Chunks, "[redacted]") {
		t.Errorf("row: headers %s, body %q; want the secret masked", r.RespHeaders, r.Chunks)
	}
}
