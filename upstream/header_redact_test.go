package upstream

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// TestCapturedHeadersRedactSecrets: credentials, including a key a browser
// WebSocket client sends as a subprotocol, never reach the stored headers.
func TestCapturedHeadersRedactSecrets(t *testing.T) {
	r, err := NewRoute(Options{Name: "t", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-provider", KeyEnv: "K",
		AuthHeader: "Ocp-Apim-Subscription-Key"}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	var src, dst fasthttp.RequestHeader
	src.SetMethod("GET")
	src.SetRequestURI("/v1/realtime")
	for k, v := range map[string]string{
		"Authorization":             "Bearer sk-client-1",
		"X-Api-Key":                 "sk-client-2",
		"Sec-WebSocket-Protocol":    "realtime, openai-insecure-api-key.sk-client-3",
		"Cookie":                    "session=sk-client-4",
		"X-Goog-Api-Key":            "sk-client-5",
		"Ocp-Apim-Subscription-Key": "sk-client-6", // the route's own key header
		"X-Visible":                 "kept",
	} {
		src.Set(k, v)
	}
	capture := string(r.copyRequestHeaders(&dst, &src, nil))
	if strings.Contains(capture, "sk-client") {
		t.Fatalf("a secret reached the captured headers: %s", capture)
	}
	for _, want := range []string{`"sec-websocket-protocol":"realtime, openai-insecure-api-key.[redacted]"`, `"authorization":"[redacted]"`, `"x-visible":"kept"`,
		`"x-goog-api-key":"[redacted]"`, `"ocp-apim-subscription-key":"[redacted]"`} {
		if !strings.Contains(capture, want) {
			t.Errorf("captured headers %s lack %s", capture, want)
		}
	}
	if v := string(dst.Peek("Ocp-Apim-Subscription-Key")); v != "sk-provider" {
		t.Errorf("upstream key header %q, want the provider key", v)
	}
	if v := dst.Peek("X-Goog-Api-Key"); len(v) != 0 {
		t.Errorf("the client's x-goog-api-key was forwarded: %q", v)
	}
}

// TestCapturedSubprotocolsKeepKnownNamesOnly: a Sec-WebSocket-Protocol
// list is stored entry by entry, trimmed and joined by ", ": "realtime",
// the bare "token" and "openai-beta." entries as they came, the key of an
// "openai-insecure-api-key." entry (whatever its case) redacted after its
// prefix, and every other entry, which may be another scheme's credential,
// redacted whole, one "[redacted]" for each; in the request and in the
// upstream's 101 alike.
func TestCapturedSubprotocolsKeepKnownNamesOnly(t *testing.T) {
	r, err := NewRoute(Options{Name: "t", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-provider", KeyEnv: "K"}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ in, want string }{
		{"realtime, openai-beta.realtime-v1", "realtime, openai-beta.realtime-v1"},
		{"realtime,openai-beta.realtime-v1", "realtime, openai-beta.realtime-v1"},
		{"realtime, openai-insecure-api-key.sk-1, openai-beta.realtime-v1", "realtime, openai-insecure-api-key.[redacted], openai-beta.realtime-v1"},
		{"OPENAI-INSECURE-API-KEY.sk-2,realtime", "OPENAI-INSECURE-API-KEY.[redacted], realtime"},
		{"  openai-insecure-api-key.sk-3  ,, x", "openai-insecure-api-key.[redacted], [redacted]"},
		{"openai-insecure-api-key.", "openai-insecure-api-key.[redacted]"},
		{"openai-insecure-api-key", "[redacted]"}, // no key, and no name known
		{"x-openai-insecure-api-key.sk-4", "[redacted]"},
		{"a\"b, openai-insecure-api-key.sk-5\"", `[redacted], openai-insecure-api-key.[redacted]`},
		// Deepgram's browser auth: the scheme kept, the key after it not.
		{"token, dg-secret-123", "token, [redacted]"},
		{"token,dg-secret-123", "token, [redacted]"},
		{"tokendg-secret-123, Token", "[redacted], [redacted]"},
		// Kubernetes' bearer token as a subprotocol.
		{"base64url.bearer.authorization.k8s.io.c2stazhzLXNlY3JldA, base64.binary.k8s.io", "[redacted], [redacted]"},
		{"Realtime, realtime-sk-6", "[redacted], [redacted]"},
		{"openai-beta.x\"y", `openai-beta.x\"y`},
		{" , ,", ""},
	} {
		var src, dst fasthttp.RequestHeader
		src.SetMethod("GET")
		src.SetRequestURI("/v1/realtime")
		src.Set("Sec-WebSocket-Protocol", tt.in)
		want := `{"sec-websocket-protocol":"` + tt.want + `"}`
		if got := string(r.CaptureRequestHeaders(nil, &src)); got != want {
			t.Errorf("request %q captured as %s, want %s", tt.in, got, want)
		}
		if got := string(r.copyRequestHeaders(&dst, &src, nil)); got != want {
			t.Errorf("request %q copied, captured as %s, want %s", tt.in, got, want)
		}
		if got := string(appendHTTPHeaderJSON(nil, http.Header{"Sec-Websocket-Protocol": {tt.in}})); got != want {
			t.Errorf("101 %q captured as %s, want %s", tt.in, got, want)
		}
	}
	// Repeated, joined: each field's keys redacted.
	var src fasthttp.RequestHeader
	src.SetMethod("GET")
	src.SetRequestURI("/v1/realtime")
	src.Add("Sec-WebSocket-Protocol", "realtime")
	src.Add("Sec-WebSocket-Protocol", "openai-insecure-api-key.sk-6")
	want := `{"sec-websocket-protocol":"realtime, openai-insecure-api-key.[redacted]"}`
	if got := string(r.CaptureRequestHeaders(nil, &src)); got != want {
		t.Errorf("repeated field captured as %s, want %s", got, want)
	}
}

// TestCapturedHeadersAreUTF8JSON: a header value that is not UTF-8 (bytes
// of ISO-8859-1, or broken) is stored as valid JSON, each such byte as the
// character of its value; valid UTF-8 stays as it is.
func TestCapturedHeadersAreUTF8JSON(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"a\xff\xfee", `"a\u00ff\u00fee"`},
		{"caf\xc3\xa9", "\"caf\xc3\xa9\""},
		{"cut \xe2\x82", `"cut \u00e2\u0082"`},
		{"tab\tq\"\\", `"tab\tq\"\\"`},
		{"\x7f", `"\u007f"`},
	} {
		got := string(appendJSONString(nil, []byte(tt.in)))
		var back string
		if got != tt.want || json.Unmarshal([]byte(got), &back) != nil || !utf8.ValidString(got) {
			t.Errorf("appendJSONString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestCapturedHeadersRedactSpelledSecrets: a credential's name spelled
// with "_" or spaces for "-" (as a CGI-style server reads it) is redacted
// in the row and never forwarded, even with underscores allowed; so is the
// route's own key header spelled so.
func TestCapturedHeadersRedactSpelledSecrets(t *testing.T) {
	r, err := NewRoute(Options{Name: "t", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-provider", KeyEnv: "K",
		AuthHeader: "Ocp-Apim-Subscription-Key", UnderscoreHeaders: true}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	raw := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX_Api_Key: sk-client-1\r\nX Api Key: sk-client-2\r\n" +
		"API_KEY: sk-client-3\r\nOcp_Apim_Subscription_Key: sk-client-4\r\nX_Goog_Api_Key: sk-client-5\r\nX_Plain: kept\r\n" +
		"Sec_WebSocket_Protocol: realtime, openai-insecure-api-key.sk-client-6\r\nContent-Length: 0\r\n\r\n"
	var req fasthttp.Request
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	var dst fasthttp.RequestHeader
	capture := string(r.copyRequestHeaders(&dst, &req.Header, nil))
	if strings.Contains(capture, "sk-client") {
		t.Fatalf("a secret reached the captured headers: %s", capture)
	}
	if !strings.Contains(capture, `"x_plain":"kept"`) {
		t.Errorf("captured headers %s lack x_plain", capture)
	}
	if strings.Contains(dst.String(), "sk-client") || string(dst.Peek("X_plain")) != "kept" {
		t.Errorf("upstream request head:\n%s", dst.String())
	}
	if capture := string(r.CaptureRequestHeaders(nil, &req.Header)); strings.Contains(capture, "sk-client") {
		t.Fatalf("a secret reached the headers of a refused request: %s", capture)
	}
	// On a WebSocket route, where the subprotocol list itself goes on (its
	// key entry stripped by the dialer), a spelled one does not.
	ws, err := NewRoute(Options{Name: "w", Path: "/v1/realtime", Upstream: "ws://127.0.0.1:1", ProviderKey: "sk-provider", KeyEnv: "K",
		Kind: record.KindWS, UnderscoreHeaders: true}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	var wdst fasthttp.RequestHeader
	ws.copyRequestHeaders(&wdst, &req.Header, nil)
	if h := wdst.String(); strings.Contains(h, "sk-client-6") || strings.Contains(h, "sk-client-1") {
		t.Errorf("ws upstream request head:\n%s", h)
	}
}
