package handlers

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
)

// TestUpstreamFailureLogged: why an upstream could not be reached (here a
// refused connect) is in the relay's log, once per 10 s with a count of the
// others: the client's 502 and the row say only "cannot connect", and
// nothing said whether DNS, the connect or TLS failed.
func TestUpstreamFailureLogged(t *testing.T) {
	var logs servicetest.Buffer
	addr, mock := serveChatRelay(t, upstream.Options{}, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, &fasthttp.Server{}, false)
	_ = mock.Close() // nothing listens there any more: connects are refused
	for i := range 3 {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + addr + "/v1/chat/completions")
		req.Header.SetMethod("POST")
		req.Header.Set("Authorization", "Bearer sk-test")
		req.SetBodyString(`{"model":"m","stream":true}`)
		if err := fasthttp.Do(req, resp); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != fasthttp.StatusBadGateway {
			t.Fatalf("request %d: status %d, want 502", i, resp.StatusCode())
		}
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(resp)
	}
	out := logs.String()
	if n := strings.Count(out, "upstream failed before answering"); n != 1 {
		t.Fatalf("%d log lines for 3 failed connects, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "connection refused") || !strings.Contains(out, "error_type=upstream_connect") || strings.Contains(out, "Bearer pk") {
		t.Errorf("log line does not say why: %s", out)
	}
}
