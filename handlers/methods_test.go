package handlers

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/upstream"
	"github.com/valyala/fasthttp"
)

// TestMethodRefusedBeforeUpload: a request whose method its route does not
// relay is answered 405 (with Allow) before it uploads its body when it
// asks for 100-continue, as every other refusal that does not need the
// body is; before, it got 100 Continue, uploaded, then the 405.
func TestMethodRefusedBeforeUpload(t *testing.T) {
	rows := &storageRows{rows: map[string]storageRow{}}
	addr, _ := serveChatRelay(t, upstream.Options{Methods: []string{"POST", "OPTIONS"}},
		Options{Sinks: []Sink{rows}, BodyLimit: 8 << 20}, &fasthttp.Server{MaxRequestBodySize: 8 << 20}, true)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte("PUT /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer sk-test\r\n" +
		"Content-Type: application/json\r\nContent-Length: 2000000\r\nExpect: 100-continue\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST, OPTIONS" {
		t.Fatalf("PUT with Expect: %d Allow %q, want 405 before the upload", resp.StatusCode, resp.Header.Get("Allow"))
	}
	row := rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.status != 405 || row.keyID == "" || !strings.Contains(row.errType, "bad_request") {
		t.Errorf("row %+v", row)
	}
}
