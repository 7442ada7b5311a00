package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/stream-relay/stream-relay/record"
)

// headCatcher is an upstream on a real socket that answers every request
// with 200 "ok" and hands over each request's head as it came.
func headCatcher(t *testing.T) (addr string, heads <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan string, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var head strings.Builder
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					ch <- head.String()
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), ch
}

// TestRequestTarget: the request line the upstream receives joins the
// upstream URL's path and the client's path, escaped, and the query as the
// client sent it; the Host header is the upstream's, in lower case.
func TestRequestTarget(t *testing.T) {
	addr, heads := headCatcher(t)
	port := addr[strings.LastIndexByte(addr, ':'):]
	for _, tc := range []struct {
		base, path, query string
		target            string
	}{
		{"/", "/v1/chat/completions", "", "/v1/chat/completions"},
		{"/openai/v1/", "/chat/completions", "api-version=2024-06-01&x=%2F", "/openai/v1/chat/completions?api-version=2024-06-01&x=%2F"},
		{"/base%20x", "/v1/a b/\xc3\xbc%", "q", "/base%20x/v1/a%20b/%C3%BC%25?q"},
		{"", "", "", "/"},
		{"", "/" + strings.Repeat("long/", 80), "k=" + strings.Repeat("v", 300), "/" + strings.Repeat("long/", 80) + "?k=" + strings.Repeat("v", 300)},
	} {
		r, err := NewRoute(Options{Name: "t", Path: "/*", Upstream: "http://LocalHost" + port + tc.base, ProviderKey: "sk-p", KeyEnv: "K"}, NewClients())
		if err != nil {
			t.Fatal(err)
		}
		r.client.Addr, r.pool.targets[0].route.client.Addr = addr, addr // LocalHost may resolve to ::1 first
		var h fasthttp.RequestHeader
		h.SetMethod("POST")
		h.SetRequestURI("/ignored")
		rec := record.Acquire(1 << 20)
		var resp fasthttp.Response
		in := &Request{Header: &h, Method: []byte("POST"), Path: []byte(tc.path), Query: []byte(tc.query), Body: []byte("{}")}
		s, errType, status, err := r.Open(in, rec, &resp, nil, func(*record.Record) {})
		if err != nil {
			t.Fatalf("%+v: Open: %v (%s, %d)", tc, err, errType, status)
		}
		var got string
		select {
		case got = <-heads:
		case <-time.After(30 * time.Second):
			t.Fatalf("%+v: no request reached the upstream", tc)
		}
		_ = s.CloseWithError(nil)
		line, rest, _ := strings.Cut(got, "\r\n")
		if want := "POST " + tc.target + " HTTP/1.1"; line != want {
			t.Errorf("request line %q, want %q", line, want)
		}
		mh, err := textproto.NewReader(bufio.NewReader(bytes.NewReader([]byte(rest)))).ReadMIMEHeader()
		if err != nil {
			t.Fatalf("head %q: %v", got, err)
		}
		if host := mh.Get("Host"); host != "localhost"+port {
			t.Errorf("Host %q, want %q", host, "localhost"+port)
		}
		if a := mh.Get("Authorization"); a != "Bearer sk-p" {
			t.Errorf("Authorization %q", a)
		}
	}
}
