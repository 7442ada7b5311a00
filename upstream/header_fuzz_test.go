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
// captured as JSON whose entries (the value split at commas, trimmed,
// empty ones left out, joined by ", ") are, in order: a known name
// ("realtime", "token", "openai-beta.…", compared exactly) as it came, an entry that carries a key
// (IsKeySubprotocol) as its KeySubprotocol prefix and "[redacted]", and
// any other entry "[redacted]": the count of entries kept, nothing of an
// unknown entry left.
func FuzzSubprotocolCapture(f *testing.F) {
	f.Add([]byte("realtime, openai-insecure-api-key.abc, openai-beta.realtime-v1"))
	f.Add([]byte("OPENAI-INSECURE-API-KEY.x,realtime"))
	f.Add([]byte(" openai-insecure-api-key.\u00a0, \u0085openai-insecure-api-key.k\u2028"))
	f.Add([]byte("a\"b\\, openai-insecure-api-key.\x00\xff,"))
	f.Add([]byte("token, dg-secret-123"))
	f.Add([]byte("base64url.bearer.authorization.k8s.io.dG9rZW4, base64.binary.k8s.io"))
	f.Add([]byte("openai-beta.\xff\"x ,, \u0085token\u00a0"))
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
		var want []string
		for _, w := range bytes.Split(in, []byte(",")) {
			switch p := bytes.TrimSpace(w); {
			case len(p) == 0:
			case string(p) == "realtime" || string(p) == "token" || bytes.HasPrefix(p, []byte("openai-beta.")):
				var s string // as JSON reads it back: bytes that are not UTF-8 are escaped as characters
				if err := json.Unmarshal(appendJSONString(nil, p), &s); err != nil {
					t.Fatal(err)
				}
				want = append(want, s)
			case IsKeySubprotocol(p):
				want = append(want, string(p[:len(KeySubprotocol)])+redacted)
			default:
				want = append(want, redacted)
			}
		}
		if got := m["sec-websocket-protocol"]; got != strings.Join(want, ", ") {
			t.Fatalf("%q captured as %q, want %q", in, got, strings.Join(want, ", "))
		}
	})
}
