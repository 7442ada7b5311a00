package handlers

import (
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
)

// serveChatRelay serves a relay over a real fasthttp server (srv, its
// Handler set here, and its ExpectHandler when expect is set) in front of
// the mock upstream: one sse route "openai"
// at /v1/chat/completions (8 MiB bodies; route's Capture and
// MaxCaptureBytes as given), the key sk-test of tenant t, and o's other
// options (its Routes, Keys and Watchdog are set here). It returns the
// server's address and the mock.
func serveChatRelay(t *testing.T, route upstream.Options, o Options, srv *fasthttp.Server, expect bool) (string, *mockllm.Server) {
	t.Helper()
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mock := mockllm.New(mockllm.Options{})
	go mock.Serve(mln)
	t.Cleanup(func() { _ = mock.Close() })
	route.Name, route.Path = "openai", "/v1/chat/completions"
	if route.Upstream == "" { // else the test's own upstream
		route.Upstream = "http://" + mln.Addr().String()
	}
	route.Kind, route.MaxBodyBytes, route.ProviderKey = record.KindSSE, 8<<20, "pk"
	rt, err := upstream.NewRoute(route, upstream.NewClients())
	if err != nil {
		t.Fatal(err)
	}
	if o.Keys, err = NewKeys([]KeyOptions{{Key: "sk-test", Tenant: "t"}}); err != nil {
		t.Fatal(err)
	}
	o.Watchdog = upstream.NewWatchdog(upstream.WatchdogOptions{})
	t.Cleanup(o.Watchdog.Stop)
	o.Routes = upstream.NewTable([]*upstream.Route{rt})
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Handler = h.serve
	if expect {
		srv.ExpectHandler = h.ExpectContinue
	}
	go srv.Serve(ln)
	t.Cleanup(func() { _ = srv.Shutdown() })
	return ln.Addr().String(), mock
}
