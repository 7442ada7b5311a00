package app

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLargeHeadRow: a request whose header block outgrows the server's read
// buffer (8 KiB) is answered 431 with an X-Request-Id and leaves a row with
// what came whole of its head in the read that began it: method, path,
// route, key and tenant, the header lines before the cut (never the key
// itself, never the line the buffer cut through). Before, such a request
// was answered without an id and left no row. A request line alone over the
// buffer is no request to log: 431 without an id, no row.
func TestLargeHeadRow(t *testing.T) {
	r := startChaosRelay(t, "", nil)
	idRe := regexp.MustCompile(`(?i)\r\nX-Request-Id: ([0-9a-f]+)\r\n`)

	// 120 fields of 100 bytes: 12 KiB of head, sent in one write.
	var pad strings.Builder
	for i := range 120 {
		fmt.Fprintf(&pad, "X-Pad-%04d: ", i)
		pad.WriteString(strings.Repeat("v", 88))
		pad.WriteString("\r\n")
	}
	body := `{"model":"gpt-large-head","stream":true,"messages":[]}`
	req := relayReq("/v1/chat/completions", "X-Case: large-head\r\n"+pad.String(), body)
	got := rawExchange(t, r.base, req, 20*time.Second)
	if statusOf(got) != 431 {
		t.Fatalf("answered %.200q, want a 431", got)
	}
	m := idRe.FindStringSubmatch(got)
	if m == nil {
		t.Fatalf("431 without X-Request-Id: %.300q", got)
	}
	row := r.rows.wait(t, m[1])
	if row.Status != 431 || row.Route != "openai" || row.Method != "POST" || row.Path != "/v1/chat/completions" ||
		row.ErrorType != "bad_request" || row.Tenant != "test-tenant" {
		t.Errorf("row: status %d route %q method %q path %q error %q tenant %q", row.Status, row.Route, row.Method,
			row.Path, row.ErrorType, row.Tenant)
	}
	var hdrs map[string]string
	if err := json.Unmarshal([]byte(row.ReqHeaders), &hdrs); err != nil {
		t.Fatalf("row's request headers (%d bytes): %v", len(row.ReqHeaders), err)
	}
	if hdrs["x-case"] != "large-head" || strings.Contains(row.ReqHeaders, relayKey) {
		t.Errorf("row's request headers: x-case %q, or the key is in them", hdrs["x-case"])
	}
	// Every header line in the row came whole: the one the buffer cut
	// through is not there in part.
	pads := 0
	for name, v := range hdrs {
		if strings.HasPrefix(name, "x-pad-") {
			pads++
			if v != strings.Repeat("v", 88) {
				t.Errorf("row keeps header %s cut short: %q", name, v)
			}
		}
	}
	if pads < 40 || pads >= 120 {
		t.Errorf("row keeps %d of the 120 padding fields, want those whole in the first 8 KiB", pads)
	}

	// A request line over the buffer: nothing to log.
	before := r.rows.count(nil)
	long := "POST /v1/chat/completions?q=" + strings.Repeat("x", 9000) + " HTTP/1.1\r\nHost: relay\r\n\r\n"
	got = rawExchange(t, r.base, long, 20*time.Second)
	if statusOf(got) != 431 || idRe.MatchString(got) {
		t.Errorf("request line over the buffer: answered %.200q, want 431 without an id", got)
	}
	time.Sleep(500 * time.Millisecond)
	if n := r.rows.count(nil) - before; n != 0 {
		t.Errorf("%d rows for a request line over the buffer, want none", n)
	}
}
