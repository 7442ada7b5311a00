package handlers

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestCheckRequestStart(t *testing.T) {
	tests := []struct {
		name      string
		give      string
		connStart bool
		want      []byte
	}{
		{"CRLF request", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", true, nil},
		{"CRLF request, body with bare LFs", "POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\na\n\nb", true, nil},
		{"head split across reads", "GET / HTTP/1.1\r\nHost: a\r\nX-B:", true, nil},
		{"request line split across reads", "GET / HTT", true, nil},
		{"empty lines first", "\r\n\r\nGET / HTTP/1.1\r\n\r\n", true, nil},
		{"bare LF request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", true, respBareLF},
		{"bare LF header", "GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", true, respBareLF},
		{"bare LF block end", "GET / HTTP/1.1\r\nHost: a\r\n\n", true, respBareLF},
		{"bare LF everywhere, later request", "GET / HTTP/1.1\nHost: a\n\n", false, respBareLF},
		{"TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", true, respTLSOnPlain},
		{"binary", "\x00\x01\x02", true, respNotHTTP},
		{"leading space", " GET / HTTP/1.1\r\n\r\n", true, respNotHTTP},
		// Later reads may begin in the middle of a pipelined request: only
		// a whole request line makes them judged.
		{"later read, body bytes", "hello world\n\nmore", false, nil},
		{"later read, binary", "\x16\x03\x01", false, nil},
		{"later read, no version", "GET /\n\n", false, nil},
		{"first read, no version (HTTP/0.9 form)", "GET /\n\n", true, nil},
		{"empty", "", true, nil},
		{"pipelined GETs", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n", true, nil},
		// A refused request behind others: they are served first (cut is
		// where it begins).
		{"pipelined GET, then bare LF", "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\nHost: a\n\n", true, respBareLF},
		{"pipelined POST body, then bare LF", "POST / HTTP/1.1\r\ncontent-length: 4\r\n\r\na\n\nbGET /b HTTP/1.1\nHost: a\n\n", true, respBareLF},
		{"pipelined chunked POST, then bare LF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n\n\n\r\n0\r\n\r\nGET /b HTTP/1.1\nX: 1\n\n", true, respBareLF},
		{"pipelined chunked POST with extensions, then bare LF", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nA;x=1\r\n0123456789\r\n0;y\r\n\r\nPOST /p/second HTTP/1.1\nHost: x\r\n\r\n", true, respBareLF},
		{"pipelined chunked POST, body past the read", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nabc\r\nGET /b HTTP/1.1\nX: 1\n\n", true, nil},
		{"pipelined chunked POST, bad size: not followed", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n0\r\n\r\nGET /b HTTP/1.1\nX: 1\n\n", true, nil},
		{"pipelined POST, body past the read", "POST / HTTP/1.1\r\nContent-Length: 500\r\n\r\nGET /b HTTP/1.1\nX: 1\n\n", true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cut, _ := CheckRequestStart([]byte(tt.give), tt.connStart)
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			// The refused request is the last that begins with a request
			// line in give: the ones before it are served.
			want := 0
			if tt.want != nil && strings.Contains(tt.name, "pipelined") {
				want = strings.LastIndex(tt.give, "GET /b")
				if want < 0 {
					want = strings.LastIndex(tt.give, "POST /p/second")
				}
			}
			if cut != want {
				t.Errorf("cut %d, want %d", cut, want)
			}
		})
	}
}

func TestRequestEdge(t *testing.T) {
	tests := []struct {
		give string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
		{"GET / HTTP/1.0\r\nHost: a\r\n\r\n", 0},
		{"GET / HTTP/1.2\r\nHost: a\r\n\r\n", 0},
		{"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"GET / HTTP/3.0\r\nHost: a\r\n\r\n", 505},
		{"GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505},
		{"FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"get / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		// A TRACE would come back with the provider key in it.
		{"TRACE /v1/chat/completions HTTP/1.1\r\nHost: a\r\n\r\n", 405},
		{"CONNECT /v1/chat/completions HTTP/1.1\r\nHost: a\r\n\r\n", 405},
		{"GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 400},
		// obs-fold: a proxy in front that does not unfold reads other
		// fields there.
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 5\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer\r\n\tsk-x\r\n\r\n", 400},
		{"GET / HTTP/1.1\r\nHost: a\r\nX-A: 1 2\r\n\r\n", 0},
		// fasthttp keeps the last Content-Type: the upstream got another
		// than the client meant, or none.
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\ncontent-TYPE: application/json\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Type:\r\n\r\n", 400},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nX-Content-Type: a\r\nContent-Type2: b\r\n\r\n", 0},
	}
	for _, tt := range tests {
		var h fasthttp.RequestHeader
		if err := h.Read(bufioReader(tt.give)); err != nil {
			t.Fatalf("%q: %v", tt.give, err)
		}
		if got, msg := requestEdge(&h); got != tt.want {
			t.Errorf("%q: %d %q, want %d", tt.give, got, msg, tt.want)
		}
	}
}

func TestCannedErrorShape(t *testing.T) {
	var resp fasthttp.Response
	if err := resp.Read(bufioReader(string(respTLSOnPlain))); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != 400 || !resp.ConnectionClose() || string(resp.Header.ContentType()) != "application/json" ||
		!bytes.HasPrefix(resp.Body(), []byte(`{"error":{"type":"bad_request","message":"TLS handshake`)) {
		t.Errorf("%q", respTLSOnPlain)
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

func FuzzCheckRequestStart(f *testing.F) {
	for _, s := range []string{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.1\nHost: a\n\n", "\x16\x03\x01", "\r\n\nPOST /x HTTP/1.0\r\n\r\n"} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, connStart bool) {
		got, cut, bad := CheckRequestStart(b, connStart)
		if bad != nil && got != nil && cut == 0 {
			t.Fatalf("a head kept for a refused read: %q", b)
		}
		if got != nil && !bytes.Equal(got, respBareLF) && !bytes.Equal(got, respTLSOnPlain) && !bytes.Equal(got, respNotHTTP) {
			t.Fatalf("unknown answer %q", got)
		}
		// Lines that all end in CRLF are never refused for a bare LF.
		if bytes.Equal(got, respBareLF) && !bareLF(b) {
			t.Fatalf("refused for a bare LF it does not hold: %q", b)
		}
	})
}
