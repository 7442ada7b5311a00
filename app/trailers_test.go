package app

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRequestTrailersRefused: a chunked request whose body ends in trailer
// fields is refused (400) before it goes upstream: fasthttp merged them
// into the header, so a trailing X-Tenant-ID was judged as the request's
// own (a 403 the row could not explain) and a trailing header could reach
// the checks as if sent up front.
func TestRequestTrailersRefused(t *testing.T) {
	up, got := liveTarget(t)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: chat
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstream: `+up+`
`, "rate_limit: {disabled: true}"))
	c, err := net.Dial("tcp", strings.TrimPrefix(p.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	body := `{"model":"m","stream":true}`
	_, err = io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+
		strconv.FormatInt(int64(len(body)), 16)+"\r\n"+body+"\r\n0\r\nX-Tenant-Id: other\r\nX-Trail: t1\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "trailers") {
		t.Fatalf("status %d %q; want 400 naming the trailers", resp.StatusCode, b)
	}
	if r := waitPoolRows(t, p, 1)[0]; r.Status != http.StatusBadRequest {
		t.Errorf("row %+v; want 400", r)
	}
	if n := len(got.all()); n != 0 {
		t.Errorf("the upstream got %d requests", n)
	}
}
