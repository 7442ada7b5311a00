package app

import (
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSlowBodyRow: a request whose head arrived whole and whose body did
// not arrive within read_timeout gets 408 with an X-Request-Id and a row
// with its route, method, path and key (fasthttp resets such a request
// before the error handler runs; the connection kept its head). A head
// that itself arrives too slowly (slowloris) still gets neither, and a
// request pipelined behind another is never logged with the other's head.
// The row starts when the head arrived and lasts until the refusal.
func TestSlowBodyRow(t *testing.T) {
	r := startChaosRelay(t, "", func(c *Config) { c.Server.ReadTimeout = time.Second })
	addr := strings.TrimPrefix(r.base, "http://")
	body := `{"model":"gpt-slow","stream":true,"messages":[]}`
	full := relayReq("/v1/chat/completions", "X-Case: %s\r\n", body)
	head := full[:len(full)-len(body)]
	idRe := regexp.MustCompile(`(?i)\r\nX-Request-Id: ([0-9a-f]+)\r\n`)

	// exchange writes each of parts (a pause between them) and reads the
	// connection to its end.
	exchange := func(parts ...string) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i, p := range parts {
			if i > 0 {
				time.Sleep(300 * time.Millisecond)
			}
			if _, err := io.WriteString(c, p); err != nil {
				t.Fatal(err)
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		got, _ := io.ReadAll(c)
		return string(got)
	}

	for _, tc := range []struct{ name, req string }{
		{"part-of-body", strings.Replace(head, "%s", "part", 1) + body[:10]},
		{"no-body", strings.Replace(head, "%s", "none", 1)},
		{"expect-continue", strings.Replace(head, "%s", "expect", 1)[:len(head)-2] + "Expect: 100-continue\r\n\r\n"},
	} {
		got := exchange(tc.req)
		answered := time.Now()
		if i := strings.Index(got, "HTTP/1.1 408"); i < 0 {
			t.Fatalf("%s: answered %q, want a 408", tc.name, got)
		}
		m := idRe.FindStringSubmatch(got)
		if m == nil {
			t.Fatalf("%s: 408 without X-Request-Id: %q", tc.name, got)
		}
		row := r.rows.wait(t, m[1])
		if row.Status != 408 || row.Route != "openai" || row.Method != "POST" || row.Path != "/v1/chat/completions" ||
			row.ErrorType != "bad_request" || row.Tenant != "test-tenant" {
			t.Errorf("%s: row %+v", tc.name, row)
		}
		// The row begins when the head arrived, read_timeout (1 s) before
		// the refusal, not at the refusal with no duration.
		if row.Duration < 500*time.Millisecond || !row.Start.Before(answered.Add(-500*time.Millisecond)) {
			t.Errorf("%s: row started %v and lasted %v; answered at %v, read_timeout 1s", tc.name,
				row.Start.Format(time.StampMicro), row.Duration, answered.Format(time.StampMicro))
		}
		if !strings.Contains(strings.ToLower(row.ReqHeaders), "x-case") || strings.Contains(row.ReqHeaders, relayKey) {
			t.Errorf("%s: row's request headers %q", tc.name, row.ReqHeaders)
		}
	}

	// A head in two pieces: not whole in the read that began the request.
	before := r.rows.count(nil)
	got := exchange(head[:20], strings.Replace(head[20:], "%s", "pieces", 1))
	if statusOf(got) != 408 || idRe.MatchString(got) {
		t.Errorf("head in pieces then no body: answered %q, want 408 without an id", got)
	}

	// A whole request and, in the same write, the head of a second one
	// whose body never comes: the first is served; the second's head was
	// not in a read that began a request, so its 408 has no row, and never
	// one with the first request's head.
	first := relayReq("/v1/chat/completions", "X-Case: first\r\n", body)
	first = strings.Replace(first, "Connection: close\r\n", "", 1)
	got = exchange(first + strings.Replace(head, "%s", "second", 1))
	if statusOf(got) != 200 || !strings.Contains(got, "HTTP/1.1 408") {
		t.Errorf("pipelined: answered %q, want 200 then 408", got)
	}
	time.Sleep(500 * time.Millisecond)
	for _, row := range r.rows.all() {
		if row.Status == 408 && strings.Contains(strings.ToLower(row.ReqHeaders), "x-case: first") {
			t.Errorf("the 408 of a pipelined request was logged with the first one's head: %+v", row)
		}
	}
	if n := r.rows.count(nil) - before; n != 1 {
		t.Errorf("%d rows after the slowloris and pipelined cases, want 1 (the served request's)", n)
	}
}

// TestCutBodyRow: a client that ends its connection inside a request body
// (an upload given up, a half-close before the body is whole) still leaves a
// row when the request's head arrived whole: status 400, client_closed, the
// route, key and headers; a client that half-closed reads the answer and
// its X-Request-Id. Before, such a request was answered without an id and
// left no row at all.
func TestCutBodyRow(t *testing.T) {
	r := startChaosRelay(t, "", nil)
	addr := strings.TrimPrefix(r.base, "http://")
	body := `{"model":"gpt-cut","stream":true,"messages":[]}`
	full := relayReq("/v1/chat/completions", "X-Case: %s\r\n", body)
	head := full[:len(full)-len(body)]
	idRe := regexp.MustCompile(`(?i)\r\nX-Request-Id: ([0-9a-f]+)\r\n`)

	// cut writes req, then half-closes (or closes) the connection and reads
	// what comes back.
	cut := func(req string, half bool) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		if !half {
			return ""
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		got, _ := io.ReadAll(c)
		return string(got)
	}
	check := func(name string, row row) {
		t.Helper()
		if row.Status != 400 || row.ErrorType != "client_closed" || row.Route != "openai" || row.Method != "POST" ||
			row.Path != "/v1/chat/completions" || row.Tenant != "test-tenant" {
			t.Errorf("%s: row %+v", name, row)
		}
		if strings.Contains(row.ReqHeaders, relayKey) {
			t.Errorf("%s: row's request headers carry the relay key: %q", name, row.ReqHeaders)
		}
	}

	got := cut(strings.Replace(head, "%s", "half", 1)+body[:10], true)
	if statusOf(got) != 400 {
		t.Fatalf("half-closed inside the body: answered %q, want a 400", got)
	}
	m := idRe.FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("half-closed inside the body: 400 without X-Request-Id: %q", got)
	}
	check("half-closed", r.rows.wait(t, m[1]))

	// A client that leaves altogether reads nothing; its row is found by
	// its header.
	closed := func(row row) bool { return strings.Contains(row.ReqHeaders, `"x-case":"closed"`) }
	cut(strings.Replace(head, "%s", "closed", 1)+body[:10], false)
	deadline := time.Now().Add(20 * time.Second)
	for r.rows.count(closed) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	n := 0
	for _, row := range r.rows.all() {
		if closed(row) {
			n++
			check("closed", row)
		}
	}
	if n != 1 {
		t.Errorf("closed inside the body: %d rows, want 1", n)
	}
}
