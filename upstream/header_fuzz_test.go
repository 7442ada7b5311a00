package upstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// FuzzCopyRequestHeaders feeds arbitrary header names and values to the
// upstream request builder, both through fasthttp's parser (what a client
// can send) and set directly (what any code path could set). The upstream
// header block never carries a CR or LF inside a line (no injection), never
// the client's credentials, always the provider key once; the captured
// headers are valid JSON, each name once, with the secrets redacted.
func FuzzCopyRequestHeaders(f *testing.F) {
	f.Add([]byte("X-Test"), []byte("value"))
	f.Add([]byte("Authorization"), []byte("Bearer sk-client-secret"))
	f.Add([]byte("X-A"), []byte("1\r\nX-Injected: 1"))
	f.Add([]byte("X-Tenant-ID"), []byte("t\x00\x01\x7f"))
	f.Add([]byte("Connection"), []byte("X-Api-Key, close"))
	f.Add([]byte("x-api-key"), []byte("sk-client-secret"))
	f.Add([]byte("Cookie\r\nX-Evil"), []byte("a"))
	f.Add([]byte("authorization"), []byte("a"))
	f.Add([]byte("HOST"), []byte("b"))
	f.Add([]byte("Sec-WebSocket-Protocol"), []byte("realtime, openai-insecure-api-key.k, openai-beta.realtime-v1"))
	r, err := NewRoute(Options{Name: "fuzz", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-provider-fuzz", KeyEnv: "K"}, NewClients())
	if err != nil {
		f.Fatal(err)
	}
	const clientSecret = "sk-client-secret"
	f.Fuzz(func(t *testing.T, name, value []byte) {
		if bytes.Contains(name, []byte("sk-")) || bytes.Contains(value, []byte("sk-")) {
			return // a key the client puts in a header of its own is its choice
		}
		var parsed fasthttp.RequestHeader
		raw := "POST /v1/x HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + clientSecret + "\r\nX-Api-Key: " + clientSecret +
			"\r\n" + string(name) + ": " + string(value) + "\r\n\r\n"
		if parsed.Read(bufio.NewReader(strings.NewReader(raw))) == nil {
			check(t, r, &parsed, clientSecret, true)
		}
		// The field twice, the second time lower case: one member.
		var twice fasthttp.RequestHeader
		raw = raw[:len(raw)-2] + strings.ToLower(string(name)) + ": " + string(value) + "\r\n\r\n"
		if twice.Read(bufio.NewReader(strings.NewReader(raw))) == nil {
			check(t, r, &twice, clientSecret, true)
		}
		var set fasthttp.RequestHeader
		set.SetMethod("POST")
		set.SetRequestURI("/v1/x")
		set.Set("Authorization", "Bearer "+clientSecret)
		set.SetBytesKV(name, value)
		check(t, r, &set, clientSecret, false)
	})
}

// check copies src and checks the upstream block; parsed says src came
// from the wire, whose field names reach the upstream only as tokens.
func check(t *testing.T, r *Route, src *fasthttp.RequestHeader, clientSecret string, parsed bool) {
	t.Helper()
	var dst fasthttp.RequestHeader
	dst.SetMethod("POST")
	dst.SetRequestURI("/v1/x")
	capture := r.copyRequestHeaders(&dst, src, nil)
	block := dst.Header()
	head, rest, ok := bytes.Cut(block, []byte("\r\n\r\n"))
	if !ok || len(rest) != 0 {
		t.Fatalf("upstream header block not one block: %q", block)
	}
	auth := 0
	for i, line := range bytes.Split(head, []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Fatalf("CR or LF inside upstream header line %d: %q", i, line)
		}
		if k, _, _ := bytes.Cut(line, []byte(":")); parsed && i > 0 && !validName(k) {
			t.Fatalf("upstream header line without a valid name: %q", line)
		}
		if k, _, _ := bytes.Cut(line, []byte(":")); i > 0 && bytes.EqualFold(bytes.TrimSpace(k), []byte("Authorization")) {
			auth++
		}
	}
	if bytes.Contains(block, []byte(clientSecret)) {
		t.Fatalf("client credentials reached the upstream: %q", block)
	}
	if auth != 1 || !bytes.Contains(block, []byte("Authorization: Bearer sk-provider-fuzz\r\n")) {
		t.Fatalf("provider key not sent exactly once: %q", block)
	}
	// Whatever bytes the header values hold, the capture is valid UTF-8
	// JSON (appendJSONString escapes bytes that are not UTF-8), each name
	// once (a field repeating one of the request's is joined to it).
	var m map[string]string
	if err := json.Unmarshal(capture, &m); err != nil || !utf8.Valid(capture) {
		t.Fatalf("captured headers not UTF-8 JSON: %q (%v)", capture, err)
	}
	if err := uniqueHeaderNames(capture); err != nil {
		t.Fatalf("captured headers %q: %v", capture, err)
	}
	if bytes.Contains(capture, []byte(clientSecret)) || bytes.Contains(capture, []byte("sk-provider-fuzz")) {
		t.Fatalf("a key in the captured headers: %q", capture)
	}
}

// FuzzSubprotocolCapture: a Sec-WebSocket-Protocol value of any bytes is
// captured as JSON in which each entry that carries a key (as handlers'
// requestCredential reads one: split at commas, trimmed, IsKeySubprotocol)
// reads its KeySubprotocol prefix and "[redacted]", and every other entry
// is kept as it came: same entries, same order, nothing of a key left.
func FuzzSubprotocolCapture(f *testing.F) {
	f.Add([]byte("realtime, openai-insecure-api-key.abc, openai-beta.realtime-v1"))
	f.Add([]byte("OPENAI-INSECURE-API-KEY.x,realtime"))
	f.Add([]byte(" openai-insecure-api-key.\u00a0, \u0085openai-insecure-api-key.k\u2028"))
	f.Add([]byte("a\"b\\, openai-insecure-api-key.\x00\xff,"))
	r, err := NewRoute(Options{Name: "fuzz", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-provider-fuzz", KeyEnv: "K"}, NewClients())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		var src fasthttp.RequestHeader
		src.SetMethod("GET")
		src.SetRequestURI("/v1/realtime")
		src.SetBytesKV([]byte("Sec-WebSocket-Protocol"), value)
		in := src.Peek("Sec-WebSocket-Protocol") // as the capture reads it
		capture := r.CaptureRequestHeaders(nil, &src)
		var m map[string]string
		if err := json.Unmarshal(capture, &m); err != nil || !utf8.Valid(capture) {
			t.Fatalf("captured headers not UTF-8 JSON: %q (%v)", capture, err)
		}
		if !utf8.Valid(in) {
			return // bytes that are not UTF-8 are escaped as characters: compared no further
		}
		got, want := strings.Split(m["sec-websocket-protocol"], ","), strings.Split(string(in), ",")
		if len(in) == 0 {
			want = []string{""}
		}
		if len(got) != len(want) {
			t.Fatalf("%q captured as %q: %d entries, want %d", in, capture, len(got), len(want))
		}
		for i, w := range want {
			p := bytes.TrimSpace([]byte(w))
			if !IsKeySubprotocol(p) {
				if got[i] != w {
					t.Fatalf("%q captured as %q: entry %d %q, want %q", in, capture, i, got[i], w)
				}
				continue
			}
			if g := strings.TrimSpace(got[i]); g != string(p[:len(KeySubprotocol)])+redacted {
				t.Fatalf("%q captured as %q: key entry %d reads %q", in, capture, i, g)
			}
		}
	})
}
