//go:build !race

package upstream

import (
	"testing"

	"github.com/valyala/fasthttp"
)

// TestHeaderCaptureAllocatesNothing: copying an SDK's request head and
// capturing it as JSON allocates nothing once the capture buffer has grown;
// a head with a few repeated fields, one allocation a capture (the values
// to join).
func TestHeaderCaptureAllocatesNothing(t *testing.T) {
	r, err := NewRoute(Options{Name: "a", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-provider", KeyEnv: "K"}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	repeated := sdkRequestHead[:len(sdkRequestHead)-2] + "Accept: text/event-stream\r\nx-stainless-os: Linux\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\n"
	for name, tt := range map[string]struct {
		head   string
		allocs float64
	}{"sdk": {sdkRequestHead, 0}, "repeats": {repeated, 2}} {
		t.Run(name, func(t *testing.T) {
			var src, dst fasthttp.RequestHeader
			if err := src.Read(bufioReader(tt.head)); err != nil {
				t.Fatal(err)
			}
			capture := make([]byte, 0, 4096)
			run := func() {
				dst.Reset()
				capture = r.copyRequestHeaders(&dst, &src, capture[:0])
				capture = r.CaptureRequestHeaders(capture[:0], &src)
			}
			run()
			if n := testing.AllocsPerRun(20, run); n != tt.allocs {
				t.Errorf("%v allocations per head (two captures), want %v", n, tt.allocs)
			}
			if name == "repeats" {
				checkHeaderObject(t, capture)
			}
		})
	}
}
