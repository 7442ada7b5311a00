package app

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHeadKeepsContentLength: the answer to a HEAD request carries the
// upstream's Content-Length (a GET's length, RFC 9110 9.3.2) and no body,
// and the client's connection serves its next request; the length was
// dropped.
func TestHeadKeepsContentLength(t *testing.T) {
	up := rawTarget(t, func(c net.Conn, _ []byte) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: 12345\r\nConnection: close\r\n\r\n")
	})
	p := chatPool(t, up, "    methods: [POST, HEAD]\n") // HEAD is no default of an exact path
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.base, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		if _, err := io.WriteString(c, "HEAD /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != "12345" {
			t.Errorf("answer %d: status %d, Content-Length %q; want 200 and the upstream's 12345", i, resp.StatusCode, resp.Header.Get("Content-Length"))
		}
	}
	if n := br.Buffered(); n != 0 {
		b, _ := br.Peek(n)
		t.Errorf("bytes after the HEAD answers: %q", b)
	}
}
