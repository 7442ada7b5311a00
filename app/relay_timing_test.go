package app

import (
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/valyala/fasthttp"
)

// BenchmarkStream20 streams 20-chunk chat completions through the relay and
// straight to the mock upstream in the same run; compare their ns/op. The
// client, the relay and the mock share the process, so allocs/op counts all
// three.
func BenchmarkStream20(b *testing.B) {
	mock, mockBase, err := mockllm.Listen("127.0.0.1:0", mockllm.Options{RequireKey: providerKey})
	if err != nil {
		b.Fatal(err)
	}
	defer mock.Close()
	b.Setenv("TEST_PROVIDER_KEY", providerKey)
	cfg, err := Parse([]byte(testConfig(mockBase, b.TempDir(), "")))
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = a.Serve(ln) }()
	defer func() { _ = a.Shutdown(b.Context()) }()

	for _, bc := range []struct{ name, base, key string }{
		{"direct", mockBase, providerKey},
		{"relay", "http://" + ln.Addr().String(), relayKey},
	} {
		b.Run(bc.name, func(b *testing.B) {
			c := &fasthttp.Client{MaxConnsPerHost: 256}
			url := bc.base + "/v1/chat/completions"
			b.ReportAllocs()
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				req := fasthttp.AcquireRequest()
				resp := fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				for pb.Next() {
					req.SetRequestURI(url)
					req.Header.SetMethod(fasthttp.MethodPost)
					req.Header.Set("Authorization", "Bearer "+bc.key)
					req.Header.SetContentType("application/json")
					req.SetBodyString(`{"model":"bench","stream":true}`)
					if err := c.Do(req, resp); err != nil {
						b.Fatal(err)
					}
					if resp.StatusCode() != 200 || len(resp.Body()) < 1000 {
						b.Fatalf("status %d, %d bytes", resp.StatusCode(), len(resp.Body()))
					}
				}
			})
		})
	}
}
