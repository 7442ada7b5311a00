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

// lineCatcher is an upstream that records the request line of every
// request it gets, byte for byte, and answers each with a small JSON body.
func lineCatcher(t *testing.T) (addr string, lines chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	lines = make(chan string, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					lines <- strings.TrimRight(line, "\r\n")
					n := 0
					for {
						h, err := br.ReadString('\n')
						if err != nil {
							return
						}
						if h == "\r\n" {
							break
						}
						if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Content-Length") {
							n, _ = strconv.Atoi(strings.TrimSpace(v))
						}
					}
					if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
						return
					}
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	return ln.Addr().String(), lines
}

// rawRequest sends target to the relay in a request line of its own (no
// client library cleans it) and returns the response's status and body.
func rawRequest(t *testing.T, base, target, auth string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	req := "POST " + target + " HTTP/1.1\r\nHost: relay.test\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n"
	if auth != "" {
		req += "Authorization: Bearer " + auth + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n{}"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", target, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(body)
}

// TestRawPathReachesUpstream: the path a client sent reaches the upstream
// as it was sent (percent-escapes, "//"), behind the upstream URL's base
// path, with the relay key's ?key= taken out of the query; one whose
// route's part is spelled with an encoded '/' or a "//" goes as routed
// (normalized); a path with a dot segment is refused with 400 bad_request
// and reaches no upstream.
func TestRawPathReachesUpstream(t *testing.T) {
	up, lines := lineCatcher(t)
	r := startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "routes:\n", `routes:
  - name: gemini
    path: /v1beta/*
    upstream: http://`+up+`/base
    auth_env: TEST_PROVIDER_KEY
    auth_header: x-goog-api-key
  - name: exact
    path: /v1/raw/completions
    upstream: http://`+up+`
    auth_env: TEST_PROVIDER_KEY
`, 1)
	}, nil)
	for _, tc := range []struct{ target, auth, want string }{
		{"/v1beta/models/models%2Fgemini-x:generateContent?alt=sse&key=" + relayKey, "", "/base/v1beta/models/models%2Fgemini-x:generateContent?alt=sse"},
		{"/v1beta/models/gemini-x%3AstreamGenerateContent", relayKey, "/base/v1beta/models/gemini-x%3AstreamGenerateContent"},
		{"/v1beta/files/a%20b%2520c%41", relayKey, "/base/v1beta/files/a%20b%2520c%41"},
		{"/v1beta/models//x/", relayKey, "/base/v1beta/models//x/"},
		{"/v1beta/a|b", relayKey, "/base/v1beta/a%7Cb"},
		{"/v1/raw/completions?x=%2F&key=" + relayKey + "&y", "", "/v1/raw/completions?x=%2F&y"},
		// Empty pairs are the client's: forwarded as sent.
		{"/v1/raw/completions?a=1&&b=%41&", relayKey, "/v1/raw/completions?a=1&&b=%41&"},
		{"/v1/raw/completions?key=" + relayKey + "&&", "", "/v1/raw/completions"},
		{"http://relay.test/v1beta/abs%2Fform?q=1", relayKey, "/base/v1beta/abs%2Fform?q=1"},
		// The route's own part not spelled out: the routed path goes.
		{"/v1beta%2Fmodels/x", relayKey, "/base/v1beta/models/x"},
		{"/v1//raw/completions", relayKey, "/v1/raw/completions"},
		{"//v1beta/x", relayKey, "/base/v1beta/x"},
	} {
		status, body := rawRequest(t, r.base, tc.target, tc.auth)
		if status != 200 {
			t.Errorf("%s: status %d %s", tc.target, status, body)
			continue
		}
		select {
		case line := <-lines:
			if want := "POST " + tc.want + " HTTP/1.1"; line != want {
				t.Errorf("%s: upstream got %q, want %q", tc.target, line, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: nothing reached the upstream", tc.target)
		}
	}
	for _, tc := range []struct {
		target string
		status int
	}{
		{"/v1beta/models/../../admin", 404},           // normalized /admin: no route, as before
		{"/v1beta/models/x/../../../base/admin", 404}, // normalized /base/admin
		{"/v1beta/x/../../v1beta/y", 400},             // normalized /v1beta/y: the route, reached by a climb
		{"/v1beta/x/%2e%2e/y", 400},
		{"/v1beta/x/%2E%2e%2fy", 400},
		{"/v1beta/x/y%2F..%2Fz", 400},
		{"/v1beta/x/..;/y", 400},
		{"/v1beta/x/.", 400},
		{"/v1/raw/completions/../completions", 400},
		{"/v1/raw/x/../completions", 400},
	} {
		status, body := rawRequest(t, r.base, tc.target, relayKey)
		want := `"type":"not_found"`
		if tc.status == 400 {
			want = `"type":"bad_request","message":"route `
			if !strings.Contains(body, "the request path") {
				t.Errorf("%s: message %s, want one naming the request path", tc.target, body)
			}
		}
		if status != tc.status || !strings.Contains(body, want) {
			t.Errorf("%s: status %d %s, want %d %s", tc.target, status, body, tc.status, want)
		}
		if testing.Verbose() {
			t.Logf("%s: %d %s", tc.target, status, body)
		}
	}
	select {
	case line := <-lines:
		t.Errorf("a refused path reached the upstream: %q", line)
	case <-time.After(100 * time.Millisecond):
	}
}
