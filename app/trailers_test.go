package app

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestRequestTrailersRefused: a chunked request whose body ends in trailer
// fields is refused (400) before it goes upstream: fasthttp merged them
// into the header, so a trailing X-Tenant-ID was judged as the request's
// own (a 403 the row could not explain) and a trailing header could reach
// the checks as if sent up front.
func TestRequestTrailersRefused(t *testing.T) {
	up, got := liveTarget(t)
	p := chatPool(t, up, "")
	body := `{"model":"m","stream":true}`
	a := sendRaw(t, p.base, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+
		"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
		strconv.FormatInt(int64(len(body)), 16)+"\r\n"+body+"\r\n0\r\nX-Tenant-Id: other\r\nX-Trail: t1\r\n\r\n")
	if a.status != http.StatusBadRequest || !strings.Contains(a.body, "trailers") {
		t.Fatalf("status %d %q; want 400 naming the trailers", a.status, a.body)
	}
	if r := waitPoolRows(t, p, 1)[0]; r.Status != http.StatusBadRequest {
		t.Errorf("row %+v; want 400", r)
	}
	if n := len(got.all()); n != 0 {
		t.Errorf("the upstream got %d requests", n)
	}
}
