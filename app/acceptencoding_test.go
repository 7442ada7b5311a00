package app

import (
	"compress/gzip"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// TestUpstreamAskedForIdentity: the relay asks the upstream for plain
// bytes with Accept-Encoding: identity, whatever the client accepts. With
// no Accept-Encoding at all (the relay dropped the client's), an upstream
// may use any coding (RFC 9110 12.5.3): one that gzips then handed the
// client gzip it never asked for, and the row kept compressed chunks with
// no TTFT and no tokens. A route's own Accept-Encoding (headers) is sent
// as the operator wrote it.
func TestUpstreamAskedForIdentity(t *testing.T) {
	const events = "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n" +
		"data: [DONE]\n\n"
	var mu sync.Mutex
	var asked []string
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ae, sent := r.Header["Accept-Encoding"]
		mu.Lock()
		asked = append(asked, strings.Join(ae, ","))
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		// RFC 9110 12.5.3: no Accept-Encoding means any coding will do.
		if !sent || strings.Contains(strings.Join(ae, ","), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write([]byte(events))
			_ = zw.Close()
			return
		}
		_, _ = w.Write([]byte(events))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p := startPool(t, poolConfig(t, `
  - name: plain
    path: /v1/chat/completions
    upstream: http://`+ln.Addr().String()+`
  - name: zipped
    path: /v1/messages
    upstream: http://`+ln.Addr().String()+`
    headers:
      Accept-Encoding: gzip
`, "rate_limit: {disabled: true}"))

	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	a := sendRaw(t, p.base, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+
		"\r\nAccept-Encoding: gzip, deflate, br\r\nContent-Type: application/json\r\nContent-Length: "+itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
	if a.status != http.StatusOK || a.header.Get("Content-Encoding") != "" || a.body != events {
		t.Fatalf("client got status %d, Content-Encoding %q, body %q; want 200 and the events uncompressed",
			a.status, a.header.Get("Content-Encoding"), a.body)
	}
	r := waitPoolRows(t, p, 1)[0]
	if r.Chunks != events || r.TTFT == record.None || r.TokensOut != 3 {
		t.Errorf("row: chunks %q, ttft %v, tokens_out %d; want the plain events, a TTFT and 3 tokens", r.Chunks, r.TTFT, r.TokensOut)
	}

	a = sendRaw(t, p.base, "POST /v1/messages HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+
		"\r\nContent-Type: application/json\r\nContent-Length: "+itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
	if a.status != http.StatusOK || a.header.Get("Content-Encoding") != "gzip" {
		t.Errorf("route asking for gzip: status %d, Content-Encoding %q; want the upstream's gzip", a.status, a.header.Get("Content-Encoding"))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || asked[0] != "identity" || asked[1] != "gzip" {
		t.Errorf("upstream was asked for Accept-Encoding %q; want identity, then the route's gzip", asked)
	}
}

// TestCompressedRequestModel: a request body sent gzip'd (Content-Encoding:
// gzip) goes to the upstream and into the row as it came, and the row's
// model is read from its decoded bytes; it was empty.
func TestCompressedRequestModel(t *testing.T) {
	var got atomic.Value
	up := rawTarget(t, func(c net.Conn, reqBody []byte) {
		got.Store(string(reqBody))
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	})
	p := chatPool(t, up, "")
	var zb strings.Builder
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write([]byte(`{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o-mini"}`))
	_ = zw.Close()
	body := zb.String()
	a := sendRaw(t, p.base, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+
		"\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: "+itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
	if a.status != http.StatusOK {
		t.Fatalf("status %d: %q", a.status, a.raw)
	}
	if b, _ := got.Load().(string); b != body {
		t.Errorf("upstream got the body %q; want the gzip'd body as it came", b)
	}
	if r := waitPoolRows(t, p, 1)[0]; r.Model != "gpt-4o-mini" {
		t.Errorf("row's model %q; want gpt-4o-mini", r.Model)
	}
}
