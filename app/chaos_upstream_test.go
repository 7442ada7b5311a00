package app

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"go.uber.org/goleak"
)

// noFollow is the test client that never follows a redirect.
var noFollow = &http.Client{Transport: testClient.Transport, Timeout: 30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

const sseHead = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"

// chunk frames s as one HTTP chunk.
func chunk(s string) string { return strconv.FormatInt(int64(len(s)), 16) + "\r\n" + s + "\r\n" }

// TestChaosBrokenUpstreams: raw TCP upstreams that misbehave in every way a
// provider (or the network) can. Each: the right status before the first
// byte, a cut stream after it, the row's error_type, the upstream
// connection closed, no goroutine left.
func TestChaosBrokenUpstreams(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	binary := []byte("data: \xff\xfe\x00\x01 not json\n\nrandom \x80\x81 bytes without framing\r\n\x00")
	tests := []struct {
		name     string
		kind     string
		behave   func(c net.Conn, head string)
		status   int    // status the client gets
		errType  string // the row's error_type
		cut      bool   // the client sees the body cut short
		wantBody []byte // exact body, when set
		check    func(t *testing.T, resp *http.Response, body []byte)
	}{
		{name: "closes before headers", behave: func(c net.Conn, head string) {},
			status: 502, errType: record.ErrUpstreamReset},
		{name: "resets before headers", behave: func(c net.Conn, head string) {
			_ = c.(*bufConn).Conn.(*net.TCPConn).SetLinger(0)
		}, status: 502, errType: record.ErrUpstreamReset},
		{name: "garbage status line", behave: func(c net.Conn, head string) {
			io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n\r\n")
		}, status: 502, errType: record.ErrUpstreamReset},
		{name: "stalls before headers", behave: func(c net.Conn, head string) {
			time.Sleep(3 * time.Second)
		}, status: 504, errType: record.ErrUpstreamTimeout},
		{name: "stalls mid headers", behave: func(c net.Conn, head string) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
			time.Sleep(3 * time.Second)
		}, status: 504, errType: record.ErrUpstreamTimeout},
		{name: "endless header block", behave: func(c net.Conn, head string) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\n")
			line := "X-Endless: " + strings.Repeat("a", 1000) + "\r\n"
			for i := 0; i < 64<<10; i++ { // at most 64 MiB; the relay stops reading long before
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
			}
		}, status: 502, errType: record.ErrUpstreamReset},
		{name: "resets mid-stream", behave: func(c net.Conn, head string) {
			io.WriteString(c, sseHead+chunk("data: one\n\n")+chunk("data: two\n\n"))
			time.Sleep(100 * time.Millisecond)
			_ = c.(*bufConn).Conn.(*net.TCPConn).SetLinger(0)
		}, status: 200, errType: record.ErrUpstreamReset, cut: true},
		{name: "closes mid-stream", behave: func(c net.Conn, head string) {
			io.WriteString(c, sseHead+chunk("data: one\n\n"))
		}, status: 200, errType: record.ErrUpstreamReset, cut: true},
		{name: "short content-length body", behave: func(c net.Conn, head string) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 1000\r\n\r\ndata: one\n\n")
		}, status: 200, errType: record.ErrUpstreamReset, cut: true},
		{name: "stalls after headers", behave: func(c net.Conn, head string) {
			io.WriteString(c, sseHead+chunk("data: one\n\n"))
			time.Sleep(3 * time.Second)
		}, status: 200, errType: record.ErrUpstreamTimeout, cut: true},
		{name: "malformed chunk size", behave: func(c net.Conn, head string) {
			io.WriteString(c, sseHead+chunk("data: one\n\n")+"zz\r\ndata: two\n\n\r\n0\r\n\r\n")
		}, status: 200, errType: record.ErrUpstreamReset, cut: true},
		{name: "chunk without CRLF", behave: func(c net.Conn, head string) {
			io.WriteString(c, sseHead+"b\r\ndata: one\n\nXX0\r\n\r\n")
		}, status: 200, errType: record.ErrUpstreamReset, cut: true},
		{name: "endless chunk-size line", behave: func(c net.Conn, head string) {
			io.WriteString(c, sseHead)
			for i := 0; i < 1<<16; i++ {
				if _, err := io.WriteString(c, "0000000000000000"); err != nil {
					return
				}
			}
			// No byte of the body came: the relay answers for it (cutanswer.go).
		}, status: 502, errType: record.ErrUpstreamReset},
		{name: "endless trailer", behave: func(c net.Conn, head string) {
			io.WriteString(c, sseHead+chunk("data: one\n\n")+"0\r\n")
			for i := 0; i < 1<<16; i++ {
				if _, err := io.WriteString(c, "X-Trailer: 1234567890\r\n"); err != nil {
					return
				}
			}
		}, status: 200, errType: record.ErrUpstreamReset, cut: true},
		{name: "invalid utf-8 and non-sse bytes", behave: func(c net.Conn, head string) {
			io.WriteString(c, sseHead+chunk(string(binary[:20]))+chunk(string(binary[20:]))+"0\r\n\r\n")
		}, status: 200, wantBody: binary},
		{name: "body until close", behave: func(c net.Conn, head string) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"+string(binary))
		}, status: 200, wantBody: binary},
		// Relayed as is (error_type upstream_status is for 4xx/5xx only).
		{name: "redirect to another host", behave: func(c net.Conn, head string) {
			io.WriteString(c, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/steal\r\nContent-Length: 0\r\n\r\n")
		}, status: 302, errType: "", check: func(t *testing.T, resp *http.Response, body []byte) {
			if loc := resp.Header.Get("Location"); loc != "http://127.0.0.1:1/steal" {
				t.Errorf("Location %q not relayed as is", loc)
			}
		}},
		{name: "1xx then 200", behave: func(c net.Conn, head string) {
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"+sseHead+chunk("data: one\n\n")+"0\r\n\r\n")
		}, status: 200, wantBody: []byte("data: one\n\n")},
	}
	var routes strings.Builder
	ups := make([]*rawUpstream, len(tests))
	for i, tt := range tests {
		ups[i] = startRawUpstream(t, tt.behave)
		kind := tt.kind
		if kind == "" {
			kind = "sse"
		}
		routes.WriteString(rawRoute("up"+strconv.Itoa(i), "/up/"+strconv.Itoa(i), ups[i].base(), kind, ""))
	}
	r := startChaosRelay(t, routes.String(), nil)
	var expected, unexpected int64
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := func(format string, args ...any) {
				t.Helper()
				t.Errorf(format, args...)
				unexpected++
			}
			start := time.Now()
			req, _ := http.NewRequest(http.MethodPost, r.base+"/up/"+strconv.Itoa(i), strings.NewReader(`{"model":"m","stream":true}`))
			req.Header.Set("Authorization", "Bearer "+relayKey)
			resp, err := noFollow.Do(req)
			if err != nil {
				// The stream failed before its first byte reached the
				// socket: the buffered status line went with it.
				took := time.Since(start)
				if !tt.cut || took > 8*time.Second {
					bad("request failed: %v", err)
				} else {
					expected++
				}
				return
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != tt.status {
				bad("status %d, want %d: %.200q", resp.StatusCode, tt.status, body)
			}
			if tt.cut && err == nil {
				bad("client saw a clean end: %.200q", body)
			}
			if !tt.cut && err != nil {
				bad("body cut: %v", err)
			}
			if tt.status >= 500 && !bytes.Contains(body, []byte(`"error"`)) {
				bad("no JSON error before the first byte: %q", body)
			}
			if tt.wantBody != nil && !bytes.Equal(body, tt.wantBody) {
				bad("body %q, want %q unchanged", body, tt.wantBody)
			}
			if tt.check != nil {
				tt.check(t, resp, body)
			}
			row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
			if row.ErrorType != tt.errType || row.Status != tt.status {
				bad("row status %d error_type %q, want %d %q", row.Status, row.ErrorType, tt.status, tt.errType)
			}
			if took > 8*time.Second {
				bad("took %v", took)
			}
			if n := ups[i].accepted.Load(); n != 1 {
				bad("upstream saw %d connections, want 1 (no retry, no redirect followed)", n)
			}
			if !ups[i].waitClosed(5 * time.Second) {
				bad("the relay kept the upstream connection open")
			}
			expected++
		})
	}
	r.stop(t)
	for _, u := range ups {
		u.close()
	}
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	sinkOnly(chaosResult{scenario: "upstream/broken-upstreams", sent: int64(len(tests)), answered: int64(len(tests)), expected: expected,
		unexpect: unexpected, stored: r.rows.count(nil), leaks: lk}).emit(t)
}

// TestChaosUpstreamRefuses: nothing listens: 502 upstream_connect.
func TestChaosUpstreamRefuses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := startChaosRelay(t, rawRoute("gone", "/gone", "http://"+addr, "sse", ""), nil)
	var unexpected int64
	const n = 20
	for i := 0; i < n; i++ {
		resp := r.post(t, "/gone", `{}`, nil)
		body := readAll(t, resp)
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if resp.StatusCode != 502 || !strings.Contains(body, record.ErrUpstreamConnect) || row.ErrorType != record.ErrUpstreamConnect {
			t.Errorf("status %d body %s row %q", resp.StatusCode, body, row.ErrorType)
			unexpected++
		}
	}
	sinkOnly(chaosResult{scenario: "upstream/refuses", sent: n, answered: n, expected: n - unexpected, unexpect: unexpected, stored: r.rows.count(nil)}).emit(t)
}

// TestChaosUpstreamTLS: an upstream with a certificate no CA signed is
// refused (502 upstream_connect) unless the route sets tls_skip_verify.
func TestChaosUpstreamTLS(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: secure\n\n")
	}))
	routes := rawRoute("tls", "/tls", srv.URL, "sse", "") + rawRoute("tlsskip", "/tlsskip", srv.URL, "sse", "tls_skip_verify: true")
	r := startChaosRelay(t, routes, nil)
	var unexpected int64
	resp := r.post(t, "/tls", `{}`, nil)
	body := readAll(t, resp)
	if row := r.rows.wait(t, resp.Header.Get("X-Request-Id")); resp.StatusCode != 502 || row.ErrorType != record.ErrUpstreamConnect {
		t.Errorf("bad certificate: status %d %s, row %q", resp.StatusCode, body, row.ErrorType)
		unexpected++
	}
	resp = r.post(t, "/tlsskip", `{}`, nil)
	body = readAll(t, resp)
	if resp.StatusCode != 200 || body != "data: secure\n\n" {
		t.Errorf("tls_skip_verify: status %d %q", resp.StatusCode, body)
		unexpected++
	}
	r.stop(t)
	srv.Close()
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	sinkOnly(chaosResult{scenario: "upstream/tls-bad-certificate", sent: 2, answered: 2, expected: 1, unexpect: unexpected, stored: r.rows.count(nil), leaks: lk}).emit(t)
}

// TestChaosUpstreamHugeBody: the upstream sends a huge body as fast as it
// can to a client that discards it: the relay's memory stays flat (it holds
// one copy buffer per stream, capture stops at max_capture_bytes). 1 GiB
// under make chaos, 256 MiB in the default run.
func TestChaosUpstreamHugeBody(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	size := int64(256 << 20)
	if chaosLong() {
		size = 1 << 30
	}
	block := bytes.Repeat([]byte("data: 0123456789abcdef0123456789abcdef\n\n"), 1600) // 64000 bytes
	up := startRawUpstream(t, func(c net.Conn, head string) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: "+strconv.FormatInt(size, 10)+"\r\n\r\n")
		for left := size; left > 0; {
			n := min(left, int64(len(block)))
			if _, err := c.Write(block[:n]); err != nil {
				return
			}
			left -= n
		}
	})
	r := startChaosRelay(t, rawRoute("huge", "/huge", up.base(), "sse", "max_capture_bytes: 1048576")+
		rawRoute("hugeraw", "/hugeraw", up.base(), "raw", ""), nil)
	var unexpected int64
	var peakGrowth int64
	for _, path := range []string{"/huge", "/hugeraw"} {
		before := sampleProc()
		start := time.Now()
		resp := r.post(t, path, `{}`, nil)
		done := make(chan struct{})
		peak := before
		go func() {
			defer close(done)
			for {
				select {
				case <-time.After(100 * time.Millisecond):
					s := sampleProc()
					peak.rssKB, peak.heapKB = max(peak.rssKB, s.rssKB), max(peak.heapKB, s.heapKB)
				case <-done:
					return
				}
			}
		}()
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- struct{}{}
		took := time.Since(start)
		// Asserted on the Go heap: RSS in this process also moves with what
		// the runtime returns (or not) from earlier tests; it is logged.
		growth := (peak.heapKB - before.heapKB) >> 10
		peakGrowth = max(peakGrowth, growth)
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		t.Logf("%s: %d MiB in %v (%.0f MiB/s), %v -> peak %v (heap +%d MiB), %d chunk times kept, truncated %v",
			path, n>>20, took.Round(time.Millisecond), float64(n>>20)/took.Seconds(), before, peak, growth, len(row.ChunkTimes), row.Truncated)
		if err != nil || n != size || row.ErrorType != "" || row.BytesOut != size {
			t.Errorf("%s: got %d of %d bytes (%v), row %q bytes_out %d", path, n, size, err, row.ErrorType, row.BytesOut)
			unexpected++
		}
		if growth > 64 {
			t.Errorf("%s: heap grew by %d MiB relaying %d MiB", path, growth, size>>20)
			unexpected++
		}
	}
	r.stop(t)
	up.close()
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	sinkOnly(chaosResult{scenario: fmt.Sprintf("upstream/huge-body-%dMiB(heap+%dMiB)", size>>20, peakGrowth), sent: 2, answered: 2, unexpect: unexpected,
		stored: r.rows.count(nil), leaks: lk}).emit(t)
}
