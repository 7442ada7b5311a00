package upstream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/valyala/fasthttp"
)

// field is one header field in arrival order, as a test feeds it.
type field struct{ name, value string }

// captureFields builds the captured-headers object of fields as the
// relay's loops do: lower-case names, classOf's redaction.
func captureFields(fields []field) string {
	var seen headerSet
	capture := []byte{'{'}
	for _, f := range fields {
		lk := []byte(strings.ToLower(f.name))
		capture = seen.add(capture, lk, []byte(f.value), classOf(lk))
	}
	return string(seen.close(capture))
}

// TestCapturedHeadersJoinRepeats: each name is one member of the stored
// object whatever the case it came in; a repeated field's values are
// joined with ", " in arrival order (a secret's as "[redacted]" each), the
// members around it unchanged.
func TestCapturedHeadersJoinRepeats(t *testing.T) {
	for _, tt := range []struct {
		name   string
		fields []field
		want   string
	}{
		{"no repeat", []field{{"Accept", "a/b"}, {"X-Foo", "1"}}, `{"accept":"a/b","x-foo":"1"}`},
		{"case differs", []field{{"X-Foo", "a"}, {"x-foo", "b"}, {"X-FOO", "c"}}, `{"x-foo":"a, b, c"}`},
		{"interleaved", []field{{"A", "1"}, {"B", "2"}, {"A", "3"}, {"C", "q\"\\"}, {"B", "4"}, {"A", "5"}},
			`{"a":"1, 3, 5","b":"2, 4","c":"q\"\\"}`},
		{"escaped repeat", []field{{"X-Foo", "\xff"}, {"X-Bar", "x"}, {"X-Foo", "caf\xc3\xa9\n\x01"}},
			"{\"x-foo\":\"\\u00ff, caf\xc3\xa9\\n\\u0001\",\"x-bar\":\"x\"}"},
		{"empty values", []field{{"X-E", ""}, {"X-E", ""}}, `{"x-e":", "}`},
		{"set-cookie", []field{{"Set-Cookie", "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT"}, {"Content-Type", "text/plain"}, {"Set-Cookie", "b=2"}},
			`{"set-cookie":"[redacted], [redacted]","content-type":"text/plain"}`},
		{"secret repeat", []field{{"Authorization", "Bearer sk-1"}, {"authorization", "Bearer sk-2"}}, `{"authorization":"[redacted], [redacted]"}`},
		// Same length, first and last 8 bytes alike: told apart by the bytes between.
		{"long names", []field{{"X-Aaaaaaaa-1-Bbbbbbbb", "1"}, {"X-Aaaaaaaa-2-Bbbbbbbb", "2"}, {"x-aaaaaaaa-1-bbbbbbbb", "3"}},
			`{"x-aaaaaaaa-1-bbbbbbbb":"1, 3","x-aaaaaaaa-2-bbbbbbbb":"2"}`},
		{"short names", []field{{"A", "1"}, {"Ab", "2"}, {"AB", "3"}, {"a", "4"}}, `{"a":"1, 4","ab":"2, 3"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := captureFields(tt.fields)
			if got != tt.want {
				t.Errorf("captured %s\nwant     %s", got, tt.want)
			}
			checkHeaderObject(t, []byte(got))
		})
	}
}

// TestCapturedHeadersJoinPastStack: more distinct names than the stack
// array holds, each repeated after all the others, still give one member
// each with both values.
func TestCapturedHeadersJoinPastStack(t *testing.T) {
	n := 3 * headerNamesOnStack
	var fields []field
	for round := range 2 {
		for i := range n {
			fields = append(fields, field{fmt.Sprintf("X-H%d", i), fmt.Sprintf("v%d-%d", i, round)})
		}
	}
	m := checkHeaderObject(t, []byte(captureFields(fields)))
	if len(m) != n {
		t.Fatalf("%d members, want %d", len(m), n)
	}
	for i := range n {
		if v, want := m[fmt.Sprintf("x-h%d", i)], fmt.Sprintf("v%d-0, v%d-1", i, i); v != want {
			t.Errorf("x-h%d = %q, want %q", i, v, want)
		}
	}
}

// TestCapturedHeadersRepeatsFromTheWire: fields repeated in a parsed
// request or response are one member each in every capture the relay
// makes (the forwarded request, a refused one, the upstream's answer, the
// relay's own), while the fields forwarded stay as they came, one a line.
func TestCapturedHeadersRepeatsFromTheWire(t *testing.T) {
	r, err := NewRoute(Options{Name: "t", Path: "/v1/*", Upstream: "http://127.0.0.1:1", ProviderKey: "sk-provider", KeyEnv: "K"}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	var req fasthttp.RequestHeader
	if err := req.Read(bufioReader("POST /v1/x HTTP/1.1\r\nHost: relay\r\nAccept: text/event-stream\r\n" +
		"X-Foo: a\r\nAuthorization: Bearer sk-client-1\r\nx-foo: b\r\nAccept: application/json\r\n" +
		"Authorization: Bearer sk-client-2\r\nCookie: s=1\r\nX-One: 1\r\ncookie: t=2\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// fasthttp joins the Cookie lines into one field: the capture still
	// counts them.
	wantReq := map[string]string{"host": "relay", "accept": "text/event-stream, application/json", "x-foo": "a, b",
		"authorization": "[redacted], [redacted]", "x-one": "1", "cookie": "[redacted], [redacted]"}
	var dst fasthttp.RequestHeader
	for name, capture := range map[string][]byte{
		"copyRequestHeaders":    r.copyRequestHeaders(&dst, &req, nil),
		"CaptureRequestHeaders": r.CaptureRequestHeaders(nil, &req),
	} {
		if m := checkHeaderObject(t, capture); !maps.Equal(m, wantReq) {
			t.Errorf("%s: %s, want %v", name, capture, wantReq)
		}
	}
	if got := headerValues(dst.Header(), "X-Foo"); strings.Join(got, "|") != "a|b" {
		t.Errorf("upstream X-Foo fields %q, want both as they came", got)
	}

	var resp fasthttp.ResponseHeader
	if err := resp.Read(bufioReader("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" +
		"Set-Cookie: a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT\r\nX-Multi: 1\r\nSet-Cookie: b=2\r\n" +
		"x-multi: 2\r\nWWW-Authenticate: Bearer\r\nWww-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	wantResp := map[string]string{"content-type": "text/event-stream", "set-cookie": "[redacted], [redacted]",
		"x-multi": "1, 2", "www-authenticate": `Bearer, Basic realm="x"`, "content-length": "0"}
	var down fasthttp.ResponseHeader
	for name, capture := range map[string][]byte{
		"copyResponseHeaders":    copyResponseHeaders(&down, &resp, nil),
		"CaptureResponseHeaders": CaptureResponseHeaders(nil, &resp),
	} {
		if m := checkHeaderObject(t, capture); !maps.Equal(m, wantResp) {
			t.Errorf("%s: %s, want %v", name, capture, wantResp)
		}
	}
	if got := headerValues(down.Header(), "X-Multi"); strings.Join(got, "|") != "1|2" {
		t.Errorf("client X-Multi fields %q, want both as they came", got)
	}
	if got := headerValues(down.Header(), "Set-Cookie"); len(got) != 2 {
		t.Errorf("client Set-Cookie fields %q, want both", got)
	}
}

// TestCapturedHandshakeHeadersJoinRepeats: a WebSocket upstream's
// handshake answer (net/http's header map) is stored with each name once
// too.
func TestCapturedHandshakeHeadersJoinRepeats(t *testing.T) {
	h := http.Header{"Set-Cookie": {"a=1", "b=2"}, "X-Multi": {"1", "2"}, "Upgrade": {"websocket"}}
	capture := appendHTTPHeaderJSON(nil, h)
	want := `{"set-cookie":"[redacted], [redacted]","upgrade":"websocket","x-multi":"1, 2"}`
	if string(capture) != want {
		t.Errorf("captured %s, want %s", capture, want)
	}
	checkHeaderObject(t, capture)
}

// checkHeaderObject fails t unless capture is one UTF-8 JSON object of
// string members, no name twice, and returns it as a map.
func checkHeaderObject(t *testing.T, capture []byte) map[string]string {
	t.Helper()
	if err := uniqueHeaderNames(capture); err != nil || !utf8.Valid(capture) {
		t.Fatalf("captured headers %q: not UTF-8 JSON of distinct names (%v)", capture, err)
	}
	var m map[string]string
	if err := json.Unmarshal(capture, &m); err != nil {
		t.Fatalf("captured headers %q: %v", capture, err)
	}
	return m
}

// uniqueHeaderNames returns an error unless capture is a JSON object of
// string members whose names are all different.
func uniqueHeaderNames(capture []byte) error {
	d := json.NewDecoder(bytes.NewReader(capture))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("not an object: %v %v", tok, err)
	}
	seen := map[string]bool{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		name := tok.(string)
		if seen[name] {
			return fmt.Errorf("name %q twice", name)
		}
		seen[name] = true
		if tok, err := d.Token(); err != nil {
			return err
		} else if _, ok := tok.(string); !ok {
			return fmt.Errorf("%q: value %v not a string", name, tok)
		}
	}
	if tok, err := d.Token(); err != nil || tok != json.Delim('}') {
		return fmt.Errorf("object not closed: %v %v", tok, err)
	}
	if _, err := d.Token(); err == nil {
		return fmt.Errorf("bytes after the object")
	}
	return nil
}

// headerValues returns the values of the field name (any case) in a
// header block, one for each line.
func headerValues(block []byte, name string) []string {
	var out []string
	for _, line := range strings.Split(string(block), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// BenchmarkCaptureManyFields: a header block of 8 KiB of two-letter
// fields (1,600 of them, 676 names, most repeated), what a client can send
// to make the capture's work grow fastest: it stays linear in the fields
// (a map past headerNamesOnStack names, the joins made in one pass).
func BenchmarkCaptureManyFields(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("POST /v1/x HTTP/1.1\r\nHost: r\r\n")
	for i := 0; sb.Len() < 8000; i++ {
		fmt.Fprintf(&sb, "%c%c:\r\n", 'a'+i%26, 'a'+i/26%26)
	}
	sb.WriteString("\r\n")
	var req fasthttp.RequestHeader
	if err := req.Read(bufio.NewReaderSize(strings.NewReader(sb.String()), 16<<10)); err != nil {
		b.Fatal(err)
	}
	var r *Route
	capture := r.CaptureRequestHeaders(nil, &req)
	if err := uniqueHeaderNames(capture); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		capture = r.CaptureRequestHeaders(capture[:0], &req)
	}
}

// TestRefusedRowKeepsFramingAsSent: a refused request's row keeps its
// framing fields as the client sent them, not as fasthttp rewrote them
// while reading it: a smuggling attempt's Transfer-Encoding (dropped once
// the chunks were read), its Content-Length (set to the body read), no
// Connection: close the client never sent (added for HTTP/1.0).
func TestRefusedRowKeepsFramingAsSent(t *testing.T) {
	var req fasthttp.RequestHeader
	if err := req.Read(bufioReader("POST /v1/x HTTP/1.1\r\nHost: relay\r\nContent-Length: 5\r\n" +
		"Transfer-Encoding: chunked\r\nX-One: 1\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	req.SetContentLength(0) // what fasthttp does once it read the chunked body
	req.SetConnectionClose()
	want := map[string]string{"host": "relay", "content-length": "5", "transfer-encoding": "chunked", "x-one": "1"}
	if m := checkHeaderObject(t, (*Route)(nil).CaptureRequestHeaders(nil, &req)); !maps.Equal(m, want) {
		t.Errorf("captured %v, want %v", m, want)
	}
	var old fasthttp.RequestHeader
	if err := old.Read(bufioReader("GET /v1/x HTTP/1.0\r\nHost: relay\r\nConnection: keep-alive\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"host": "relay", "connection": "keep-alive"}
	if m := checkHeaderObject(t, (*Route)(nil).CaptureRequestHeaders(nil, &old)); !maps.Equal(m, want) {
		t.Errorf("HTTP/1.0: captured %v, want %v", m, want)
	}
}
