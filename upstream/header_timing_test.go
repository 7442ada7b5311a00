package upstream

import (
	"bufio"
	"io"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/stream-relay/stream-relay/record"
)

// sdkRequestHead is a chat request's head as the official OpenAI SDK
// sends it (../shared/notes/clients.md): a dozen x-stainless-* and
// friends around the key.
const sdkRequestHead = "POST /v1/chat/completions HTTP/1.1\r\n" +
	"Host: relay.example\r\n" +
	"Accept: application/json\r\n" +
	"Authorization: Bearer sk-relay-bench\r\n" +
	"Content-Type: application/json\r\n" +
	"User-Agent: OpenAI/JS 5.1.0\r\n" +
	"X-Stainless-Arch: x64\r\n" +
	"X-Stainless-Lang: js\r\n" +
	"X-Stainless-OS: Linux\r\n" +
	"X-Stainless-Package-Version: 5.1.0\r\n" +
	"X-Stainless-Retry-Count: 0\r\n" +
	"X-Stainless-Runtime: node\r\n" +
	"X-Stainless-Runtime-Version: v22.11.0\r\n" +
	"X-Stainless-Timeout: 600\r\n" +
	"Accept-Encoding: gzip, deflate\r\n" +
	"Content-Length: 75\r\n" +
	"Connection: keep-alive\r\n\r\n"

// BenchmarkCopyHeaders measures what a request costs in header handling:
// the client's headers to the upstream request and the capture's JSON,
// then a typical SSE response head back.
func BenchmarkCopyHeaders(b *testing.B) {
	r, err := NewRoute(Options{Name: "b", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-provider", KeyEnv: "K"}, NewClients())
	if err != nil {
		b.Fatal(err)
	}
	var req fasthttp.RequestHeader
	if err := req.Read(bufioReader(sdkRequestHead)); err != nil {
		b.Fatal(err)
	}
	var resp fasthttp.ResponseHeader
	if err := resp.Read(bufioReader("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" +
		"Cache-Control: no-cache\r\nDate: Wed, 02 Dec 2026 13:51:34 GMT\r\n" +
		"X-Request-Id: req_123\r\nOpenai-Processing-Ms: 120\r\nTransfer-Encoding: chunked\r\n\r\n")); err != nil {
		b.Fatal(err)
	}
	var dst fasthttp.RequestHeader
	var dstResp fasthttp.ResponseHeader
	capture := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		dst.Reset()
		dstResp.Reset()
		capture = r.copyRequestHeaders(&dst, &req, capture[:0])
		capture = copyResponseHeaders(&dstResp, &resp, capture)
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// BenchmarkBuildRequest measures the upstream request's head, built and
// written out (the request line, Host, the client's headers, the key): the
// part of each request's cost that lies before the upstream's socket.
func BenchmarkBuildRequest(b *testing.B) {
	r, err := NewRoute(Options{Name: "b", Path: "/v1/*", Upstream: "http://127.0.0.1:1/openai", ProviderKey: "sk-provider", KeyEnv: "K"}, NewClients())
	if err != nil {
		b.Fatal(err)
	}
	var hdr fasthttp.RequestHeader
	if err := hdr.Read(bufioReader(sdkRequestHead)); err != nil {
		b.Fatal(err)
	}
	in := &Request{Header: &hdr, Method: []byte("POST"), Path: []byte("/v1/chat/completions"), Query: []byte("api-version=2024-06-01"), Body: []byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`)}
	rec := record.Acquire(1 << 20)
	bw := bufio.NewWriterSize(io.Discard, 8<<10)
	b.ReportAllocs()
	for b.Loop() {
		req := fasthttp.AcquireRequest()
		r.buildRequest(req, in, rec)
		if err := req.Write(bw); err != nil {
			b.Fatal(err)
		}
		fasthttp.ReleaseRequest(req)
	}
}
