package upstream

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// TestConnectionListedFields: a field the Connection header lists stays on
// its hop, in both directions; with "keep-alive" alone every end-to-end
// field goes on.
func TestConnectionListedFields(t *testing.T) {
	r, err := NewRoute(Options{Name: "t", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-p", KeyEnv: "K"}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		conn string
		hop  bool // X-Hop stays behind
	}{
		{"keep-alive", false},
		{"Keep-Alive, Upgrade ,TE", false},
		{"keep-alive, X-Hop", true},
		{" x-hop ", true},
		{"close,X-HOP", true},
	} {
		var src, dst fasthttp.RequestHeader
		src.SetMethod("POST")
		src.SetRequestURI("/v1/x")
		src.Set("Connection", tc.conn)
		src.Set("X-Hop", "1")
		src.Set("X-Kept", "2")
		r.copyRequestHeaders(&dst, &src, nil)
		if got := len(dst.Peek("X-Hop")) == 0; got != tc.hop {
			t.Errorf("request, Connection %q: X-Hop dropped %v, want %v", tc.conn, got, tc.hop)
		}
		if string(dst.Peek("X-Kept")) != "2" {
			t.Errorf("request, Connection %q: X-Kept lost", tc.conn)
		}
		var up, down fasthttp.ResponseHeader
		up.Set("Connection", tc.conn)
		up.Set("X-Hop", "1")
		up.Set("X-Kept", "2")
		copyResponseHeaders(&down, &up, nil)
		if got := len(down.Peek("X-Hop")) == 0; got != tc.hop {
			t.Errorf("response, Connection %q: X-Hop dropped %v, want %v", tc.conn, got, tc.hop)
		}
		if string(down.Peek("X-Kept")) != "2" {
			t.Errorf("response, Connection %q: X-Kept lost", tc.conn)
		}
	}
}

// TestHTTP2SettingsNotForwarded: HTTP2-Settings belongs to the Upgrade to
// h2c the relay drops: it stays behind too, listed in Connection or not
// (it went upstream alone).
func TestHTTP2SettingsNotForwarded(t *testing.T) {
	r, err := NewRoute(Options{Name: "t", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-p", KeyEnv: "K"}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	var src, dst fasthttp.RequestHeader
	src.SetMethod("POST")
	src.SetRequestURI("/v1/x")
	src.Set("Upgrade", "h2c")
	src.Set("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA")
	r.copyRequestHeaders(&dst, &src, nil)
	if h := bytes.ToLower(dst.Header()); bytes.Contains(h, []byte("http2-settings")) || bytes.Contains(h, []byte("upgrade")) {
		t.Fatalf("forwarded: %q", dst.Header())
	}
}

// FuzzConnectionNames: when connectionNames lets a Connection value go
// unsearched, every field it lists is hop-by-hop already (a field name is
// never empty: validName is checked first).
func FuzzConnectionNames(f *testing.F) {
	for _, s := range [][2]string{{"keep-alive", "Keep-Alive"}, {"keep-alive, X-A", "x-a"}, {"upgrade,,te", "TE"}, {" , ", ""}, {"close", "Close"}} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	f.Fuzz(func(t *testing.T, conn, key []byte) {
		if len(key) == 0 || connectionNames(conn) != nil || !listedInConnection(conn, key) {
			return
		}
		if classOf(bytes.ToLower(key))&hopByHop == 0 {
			t.Fatalf("Connection %q lists %q, which is not hop-by-hop, but goes unsearched", conn, key)
		}
	})
}

// TestConnectionListedOnLaterLine: the Connection field's lines are one
// list; a field named on the second line stays on its hop too (it went
// upstream: only the first line was read).
func TestConnectionListedOnLaterLine(t *testing.T) {
	r, err := NewRoute(Options{Name: "t", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-p", KeyEnv: "K"}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	for _, first := range []string{"keep-alive", "close"} {
		var src, dst fasthttp.RequestHeader
		raw := "POST /v1/x HTTP/1.1\r\nHost: h\r\nConnection: " + first + "\r\nConnection: X-Secret\r\nX-Secret: s1\r\nX-Kept: 2\r\n\r\n"
		if err := src.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
		r.copyRequestHeaders(&dst, &src, nil)
		if v := dst.Peek("X-Secret"); len(v) != 0 || string(dst.Peek("X-Kept")) != "2" {
			t.Errorf("request, Connection %s then X-Secret: X-Secret %q went upstream (X-Kept %q)", first, v, dst.Peek("X-Kept"))
		}
		var up, down fasthttp.ResponseHeader
		rawResp := "HTTP/1.1 200 OK\r\nConnection: " + first + "\r\nConnection: X-Secret\r\nX-Secret: s1\r\nX-Kept: 2\r\nContent-Length: 0\r\n\r\n"
		if err := up.Read(bufio.NewReader(strings.NewReader(rawResp))); err != nil {
			t.Fatal(err)
		}
		copyResponseHeaders(&down, &up, nil)
		if v := down.Peek("X-Secret"); len(v) != 0 || string(down.Peek("X-Kept")) != "2" {
			t.Errorf("response, Connection %s then X-Secret: X-Secret %q reached the client (X-Kept %q)", first, v, down.Peek("X-Kept"))
		}
	}
}

// TestRouteHeaderClientValueKept: a route's headers entry goes upstream only
// when the client sent no value of its own under that name: an empty one
// (the route's replaced it) and two lines (the route's replaced the first)
// go as sent.
func TestRouteHeaderClientValueKept(t *testing.T) {
	r, err := NewRoute(Options{Name: "t", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-p", KeyEnv: "K",
		Headers: map[string]string{"anthropic-version": "2023-06-01", "x-route-h": "rv"}}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  [][2]string
		want []string // lines that must be in the upstream head, lower-cased
		not  []string
	}{
		{"none", nil, []string{"anthropic-version: 2023-06-01", "x-route-h: rv"}, nil},
		{"empty", [][2]string{{"Anthropic-Version", ""}}, []string{"anthropic-version: \r\n"}, []string{"2023-06-01"}},
		{"two lines", [][2]string{{"X-Route-H", ""}, {"X-Route-H", "client-val"}}, []string{"x-route-h: \r\n", "x-route-h: client-val"}, []string{": rv"}},
	} {
		var src, dst fasthttp.RequestHeader
		src.SetMethod("POST")
		src.SetRequestURI("/v1/x")
		for _, kv := range tc.set {
			src.Add(kv[0], kv[1])
		}
		r.copyRequestHeaders(&dst, &src, nil)
		h := strings.ToLower(string(dst.Header()))
		for _, w := range tc.want {
			if !strings.Contains(h, w) {
				t.Errorf("%s: no %q in %q", tc.name, w, h)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(h, n) {
				t.Errorf("%s: %q in %q", tc.name, n, h)
			}
		}
	}
}
