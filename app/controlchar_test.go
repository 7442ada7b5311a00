package app

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestControlCharacterHeader: a header field with a control character (a
// byte below 0x20 but HTAB, or DEL), which fasthttp refuses before the
// relay's handlers see the request, gets the relay's JSON 400 naming the
// field, an X-Request-Id, a row and the metrics; the row has the request's
// method, path, route and key, the field with a placeholder for its value.
// A head that arrived in two reads gets its row too, without them. The
// field's value is never in the answer or the row.
func TestControlCharacterHeader(t *testing.T) {
	r := startRelay(t, "")
	addr := strings.TrimPrefix(r.base, "http://")
	const secret = "s3cr3t-value"
	const line = "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n"
	head := func(fields string) string { return line + fields + "Content-Length: 2\r\n\r\n{}" }
	auth := "Authorization: Bearer " + relayKey + "\r\n"
	tests := []struct {
		name  string
		parts []string
		msg   string
		whole bool   // the row has method, path, route and the headers
		keyed bool   // the row names the relay key
		field string // in the row's request headers
	}{
		{"control byte in a value", []string{head(auth + "X-Bad: a\x01" + secret + "\r\n")},
			"control character in header X-Bad", true, true, `"x-bad":"[control character]"`},
		{"DEL in a value", []string{head(auth + "X-Bad: " + secret + "\x7f\r\n")},
			"control character in header X-Bad", true, true, `"x-bad":"[control character]"`},
		{"DEL in the relay key", []string{head("Authorization: Bearer " + secret + "\x7f\r\n")},
			"control character in header Authorization", true, false, `"authorization":"[redacted]"`},
		{"ESC in a name", []string{head(auth + "X-" + secret + "\x1b: v\r\n")},
			"control character in a header line", true, true, `"content-type":"application/json"`},
		{"in a continuation line", []string{head(auth + "X-Fold: a\r\n " + secret + "\x02\r\n")},
			"control character in header X-Fold", true, true, `"x-fold":"[control character]"`},
		{"head in two reads", []string{line + auth, "X-Bad: \x01" + secret + "\r\nContent-Length: 2\r\n\r\n{}"},
			"malformed request", false, false, "{}"},
	}
	before := getMetrics(t, r.base+"/metrics")
	upstreamBefore := r.mock.Count()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := edgeSend(t, addr, 10*time.Second, tt.parts...)
			if !a.closed {
				t.Fatalf("connection not closed: %.300q", a.resp)
			}
			if strings.Contains(a.resp, secret) {
				t.Fatalf("the answer shows the field's value: %q", a.resp)
			}
			id := a.header("X-Request-Id")
			if a.status() != 400 || a.errorType() != record.ErrBadRequest || !strings.Contains(a.resp, `"message":"`+tt.msg+`"`) ||
				a.header("Connection") != "close" || len(id) != record.IDLen {
				t.Fatalf("want 400 bad_request %q with an X-Request-Id, closed: %q", tt.msg, a.resp)
			}
			row := r.rows.wait(t, id)
			if row.Status != 400 || row.ErrorType != record.ErrBadRequest {
				t.Errorf("row %d %q", row.Status, row.ErrorType)
			}
			if all := fmt.Sprintf("%+v", row); strings.Contains(all, secret) {
				t.Errorf("the row holds the field's value: %s", all)
			}
			if (row.KeyID != "") != tt.keyed || !strings.Contains(row.ReqHeaders, tt.field) {
				t.Errorf("row key_id %q (keyed %v), headers %s (want %s)", row.KeyID, tt.keyed, row.ReqHeaders, tt.field)
			}
			method, path, route := "", "", ""
			if tt.whole {
				method, path, route = "POST", "/v1/chat/completions", "openai"
			}
			if row.Method != method || row.Path != path || row.Route != route {
				t.Errorf("row %q %q route %q, want %q %q %q", row.Method, row.Path, row.Route, method, path, route)
			}
		})
	}
	if n := r.mock.Count(); n != upstreamBefore {
		t.Errorf("%d refused requests reached the upstream", n-upstreamBefore)
	}
	after := getMetrics(t, r.base+"/metrics")
	for s, n := range map[string]float64{
		`relay_requests_total{route="openai",status="400"}`:    5,
		`relay_requests_total{route="unmatched",status="400"}`: 1,
	} {
		if got := after[s] - before[s]; got != n {
			t.Errorf("%s went up by %v, want %v", s, got, n)
		}
	}
	// A tab is a valid value byte: served.
	resp := r.post(t, "/v1/chat/completions", `{"model":"m"}`, map[string]string{"X-Tab": "a\tb"})
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Errorf("a tab in a value: %d %s", resp.StatusCode, body)
	}
}
