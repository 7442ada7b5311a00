package handlers

import (
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
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

// TestUpstreamEchoNotLogged: an upstream that answers with the request's own
// bytes (no HTTP status line) fails the relay's read of its head, whose
// error quotes them: the provider key and the prompt. That error is not
// logged; only causes that quote nothing of the upstream's are.
func TestUpstreamEchoNotLogged(t *testing.T) {
	var logs servicetest.Buffer
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				n, _ := c.Read(buf)
				_, _ = c.Write(buf[:n])
			}()
		}
	}()
	addr, _ := serveChatRelay(t, upstream.Options{Upstream: "http://" + echo.Addr().String()},
		Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, &fasthttp.Server{}, false)
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + addr + "/v1/chat/completions")
	req.Header.SetMethod("POST")
	req.Header.Set("Authorization", "Bearer sk-test")
	req.SetBodyString(`{"model":"m","messages":[{"role":"user","content":"my private prompt"}]}`)
	if err := fasthttp.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != fasthttp.StatusBadGateway {
		t.Fatalf("status %d, want 502", resp.StatusCode())
	}
	if out := logs.String(); strings.Contains(out, "Bearer pk") || strings.Contains(out, "private prompt") {
		t.Errorf("the log quotes the echoed request:\n%s", out)
	}
}

// TestUpstreamFailureLoggedPerRoute: each route's cause is logged, once per
// 10 s each: one limit for all logged the first route's cause (a
// self-signed certificate) and counted the others' (a wrong host name, an
// expired certificate) as suppressed, and no row or answer held them.
func TestUpstreamFailureLoggedPerRoute(t *testing.T) {
	var logs servicetest.Buffer
	l := slog.New(slog.NewTextHandler(&logs, nil))
	var e openErrors
	for i, route := range []string{"self-signed", "self-signed", "wrong-host", "expired"} {
		rec := record.Acquire(0)
		rec.Route = route
		e.log(l, rec, record.ErrUpstreamConnect, &upstream.DialError{Err: fmt.Errorf("tls: cause %d of %s", i, route)})
		record.Release(rec)
	}
	out := logs.String()
	if n := strings.Count(out, "upstream failed before answering"); n != 3 {
		t.Fatalf("%d lines, want one per route:\n%s", n, out)
	}
	for _, want := range []string{"cause 0 of self-signed", "cause 2 of wrong-host", "cause 3 of expired"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}
