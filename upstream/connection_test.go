package upstream

import (
	"bytes"
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
