package app

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestRepeatedHeadersStoredOnce: header fields a client or an upstream
// sends more than once, in any case, are one member each of the row's
// request_headers and response_headers, their values joined with ", " in
// arrival order (Set-Cookie's redacted each), while the upstream and the
// client still get every field as it came. A request the relay refuses
// itself (no route) is stored so too.
func TestRepeatedHeadersStoredOnce(t *testing.T) {
	var mu sync.Mutex
	var upFoo []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		mu.Lock()
		upFoo = req.Header.Values("X-Foo")
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Add("Set-Cookie", "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT")
		w.Header().Add("Set-Cookie", "b=2")
		w.Header().Add("X-Multi", "1")
		w.Header().Add("X-Multi", "2")
		_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
	}))
	defer up.Close()
	r := startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "upstream: "+firstUpstream(y)+"\n", "upstream: "+up.URL+"\n", 1) // the openai route
	}, nil)
	const repeats = "Accept: text/event-stream\r\nX-Foo: a\r\nAccept: application/json\r\nx-foo: b\r\n"

	resp, _ := rawPost(t, r.base, "HTTP/1.1", "/v1/chat/completions", repeats, `{"model":"m","stream":true}`)
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := resp.Header.Values("X-Multi"); strings.Join(got, "|") != "1|2" {
		t.Errorf("client X-Multi fields %q, want both", got)
	}
	mu.Lock()
	if strings.Join(upFoo, "|") != "a|b" {
		t.Errorf("upstream X-Foo fields %q, want both", upFoo)
	}
	mu.Unlock()
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	req := headerObject(t, row.ReqHeaders)
	if req["accept"] != "text/event-stream, application/json" || req["x-foo"] != "a, b" || req["authorization"] != "[redacted]" {
		t.Errorf("request_headers %s", row.ReqHeaders)
	}
	res := headerObject(t, row.RespHeaders)
	if res["set-cookie"] != "[redacted], [redacted]" || res["x-multi"] != "1, 2" || res["content-type"] != "text/event-stream" {
		t.Errorf("response_headers %s", row.RespHeaders)
	}

	resp, _ = rawPost(t, r.base, "HTTP/1.1", "/no/route", repeats, `{}`)
	if body := readAll(t, resp); resp.StatusCode != 404 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	row = r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if req := headerObject(t, row.ReqHeaders); req["accept"] != "text/event-stream, application/json" || req["x-foo"] != "a, b" {
		t.Errorf("refused request's request_headers %s", row.ReqHeaders)
	}
	headerObject(t, row.RespHeaders)
}

// headerObject returns a row's header column as a map, failing t unless it
// is a JSON object of strings with no name twice.
func headerObject(t *testing.T, col string) map[string]string {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(col))
	m := map[string]string{}
	err := func() error {
		if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
			return fmt.Errorf("not an object (%v)", err)
		}
		for d.More() {
			name, err := d.Token()
			if err != nil {
				return err
			}
			var v string
			if err := d.Decode(&v); err != nil {
				return err
			}
			if _, dup := m[name.(string)]; dup {
				return fmt.Errorf("%q twice", name)
			}
			m[name.(string)] = v
		}
		if _, err := d.Token(); err != nil {
			return err
		}
		if _, err := d.Token(); err != io.EOF {
			return fmt.Errorf("bytes after the object")
		}
		return nil
	}()
	if err != nil {
		t.Fatalf("header column %s: %v", col, err)
	}
	return m
}
