package upstream

import (
	"errors"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// TestDialWSClientPath: DialWS sends the path of the client's handshake to
// a real WebSocket upstream by Open's rule: as the client sent it (%2F
// intact) behind the base path, the routed path when the route's part is
// not spelled out; a dot segment is refused (400 bad_request,
// ErrDotSegment) before the upstream is dialed.
func TestDialWSClientPath(t *testing.T) {
	addr, targets := servicetest.WSTarget(t, nil)
	r, err := NewRoute(Options{Name: "rt", Path: "/v1/realtime/*", Upstream: "ws://" + addr + "/base",
		Kind: record.KindWS, ProviderKey: "pk", ConnectTimeout: 10 * time.Second, FirstByteTimeout: 10 * time.Second}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	// dial sends the handshake of a client whose request line named target.
	dial := func(target string) WSDial {
		var ctx fasthttp.RequestCtx
		ctx.Request.Header.SetMethod(fasthttp.MethodGet)
		ctx.Request.SetRequestURI(target)
		ctx.Request.Header.SetHost("relay")
		in := Request{Ctx: &ctx, Header: &ctx.Request.Header, Method: ctx.Method(), Path: ctx.Path(), Query: ctx.URI().QueryString()}
		rec := record.Acquire(0)
		rec.Start = time.Now()
		defer record.Release(rec)
		d := r.DialWS(&in, rec)
		if d.Conn != nil {
			d.Conn.Close()
		}
		return d
	}
	for _, tc := range []struct{ target, want string }{
		{"/v1/realtime/models%2Fx?model=m", "/base/v1/realtime/models%2Fx?model=m"},
		{"/v1/realtime/a//b", "/base/v1/realtime/a//b"},
		{"/v1%2Frealtime/x", "/base/v1/realtime/x"},
		// A '%' that begins no escape: the dialer's URL cannot hold it.
		{"/v1/realtime/a%zz%2F", "/base/v1/realtime/a%25zz/"},
	} {
		if d := dial(tc.target); d.Conn == nil {
			t.Errorf("%s: %d %s %v", tc.target, d.Status, d.ErrType, d.Err)
			continue
		}
		servicetest.WantTarget(t, targets, tc.target, tc.want)
	}
	for _, target := range []string{"/v1/realtime/x/%2e%2e/y", "/v1/realtime/x/..%2Fy", "/v1/realtime/."} {
		d := dial(target)
		if d.Conn != nil || d.Status != fasthttp.StatusBadRequest || d.ErrType != record.ErrBadRequest || !errors.Is(d.Err, ErrDotSegment) {
			t.Errorf("%s: %d %s %v, want 400 bad_request, ErrDotSegment", target, d.Status, d.ErrType, d.Err)
		}
	}
	select {
	case got := <-targets:
		t.Errorf("a refused path reached the upstream: %q", got)
	case <-time.After(100 * time.Millisecond):
	}
}
