//go:build !race

package upstream

import (
	"testing"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// TestRawPathAllocatesNothing: taking the client's raw path, checking it
// and building the upstream request line with it allocate nothing.
func TestRawPathAllocatesNothing(t *testing.T) {
	r := &Route{match: "/v1beta", prefix: true, basePath: "/base", host: []byte("up")}
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetHost("relay")
	rc.Request.Header.SetMethod("POST")
	rc.Request.SetRequestURI("/v1beta/models/models%2Fgemini-2.0-flash-exp-long-name%3AstreamGenerateContent?alt=sse&key=sk-relay")
	in := &Request{Ctx: &rc, Header: &rc.Request.Header, Method: []byte("POST"), Path: rc.Path(), Query: rc.URI().QueryString(), Body: []byte("{}")}
	rec := record.Acquire(1 << 10)
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	run := func() {
		raw, err := r.clientPath(in)
		if err != nil || raw == nil {
			t.Fatal(raw, err)
		}
		in.raw = raw
		req.Reset()
		r.buildRequest(req, in, rec)
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations per request, want 0", n)
	}
	bad := &Request{Ctx: &rc}
	rc.Request.SetRequestURI("/v1beta/a/%2e%2e/%2e%2e/admin")
	if n := testing.AllocsPerRun(100, func() { _, _ = r.clientPath(bad) }); n != 0 {
		t.Errorf("%v allocations per refused path, want 0", n)
	}
}
