package app

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestUpstreamEarlyAnswerDuringUpload: an upstream that refuses a large
// body as it comes (413 after the head, then closing without reading the
// rest, which resets the connection) has its answer relayed: the client
// gets the 413 and the row says upstream_status. Before, the failed write
// skipped the answer: 502 upstream_reset, and the target was ejected for
// a client's oversized upload.
func TestUpstreamEarlyAnswerDuringUpload(t *testing.T) {
	up := connTarget(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		for { // the head only
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		body := `{"error":"too large"}` + "\n"
		_, _ = io.WriteString(c, "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nContent-Length: "+
			itoa(len(body))+"\r\nConnection: close\r\n\r\n"+body)
	})
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: chat
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstreams:
      - {name: strict, url: "http://`+up+`"}
    health: {max_fails: 1, cooldown: 1m}
`, "rate_limit: {disabled: true}"))
	big := `{"model":"m","input":"` + strings.Repeat("x", 4<<20) + `"}`
	a := postClose(t, p.base, big)
	if a.status != 413 || !strings.Contains(a.body, "too large") {
		t.Fatalf("status %d %q; want the upstream's 413", a.status, a.body)
	}
	if r := waitPoolRows(t, p, 1)[0]; r.Status != 413 || r.ErrorType != record.ErrUpstreamStatus {
		t.Errorf("row %+v; want 413 upstream_status", r)
	}
	if m := p.metric(`relay_upstream_ejections_total{route="chat",target="strict"}`); !strings.HasSuffix(m, " 0") {
		t.Errorf("%q: a client's oversized upload ejected the target", m)
	}
}
