package app

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
	"go.uber.org/goleak"
)

// servedOK sends one ordinary streamed request and reports whether it came
// back whole: the relay still serves others.
func servedOK(t *testing.T, r *relay) bool {
	t.Helper()
	resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true}`, map[string]string{mockllm.HeaderChunks: "3"})
	body := readAll(t, resp)
	return resp.StatusCode == 200 && strings.Contains(body, "[DONE]")
}

// TestChaosSlowloris: clients dribbling their headers one byte at a time are
// cut at read_timeout; other clients are served meanwhile.
func TestChaosSlowloris(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	r := startChaosRelay(t, "", func(c *Config) { c.Server.ReadTimeout = time.Second })
	const slow = 50
	var wg sync.WaitGroup
	var cut, notCut atomic.Int64
	start := time.Now()
	for i := 0; i < slow; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
			if err != nil {
				notCut.Add(1)
				return
			}
			defer c.Close()
			req := relayReq("/v1/chat/completions", "", `{"stream":true}`)
			// One byte each 100ms: the head alone needs ~15s; the relay must
			// close within read_timeout (1s) plus slack.
			for j := 0; j < len(req) && j < 100; j++ {
				if _, err := c.Write([]byte{req[j]}); err != nil {
					cut.Add(1)
					return
				}
				if j%5 == 4 { // the close shows up on a read
					_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
					if _, err := c.Read(make([]byte, 512)); err != nil && !isTimeout(err) {
						cut.Add(1)
						return
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
			notCut.Add(1)
		}()
	}
	served := 0
	for i := 0; i < 10; i++ {
		if servedOK(t, r) {
			served++
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	took := time.Since(start)
	if cut.Load() != slow {
		t.Errorf("slowloris connections cut %d of %d", cut.Load(), slow)
	}
	if served != 10 {
		t.Errorf("served %d of 10 ordinary requests during the slowloris", served)
	}
	if took > 6*time.Second {
		t.Errorf("slowloris connections took %v to be cut with read_timeout 1s", took)
	}
	if n := r.mock.Count(); n != 10 {
		t.Errorf("upstream saw %d requests, want the 10 ordinary ones", n)
	}
	r.stop(t)
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	sinkOnly(chaosResult{scenario: "client/slowloris", sent: slow + 10, answered: int64(served), expected: cut.Load(),
		unexpect: notCut.Load() + int64(10-served), stored: r.rows.count(nil), leaks: lk}).emit(t)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestChaosSlowBody: headers at once, the body slower than read_timeout:
// the connection is closed and nothing goes upstream.
func TestChaosSlowBody(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	r := startChaosRelay(t, "", func(c *Config) { c.Server.ReadTimeout = time.Second })
	c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("x", 100)
	req := relayReq("/v1/chat/completions", "", body)
	head := req[:len(req)-len(body)]
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed := false
	var got []byte
	for i := 0; i < len(body) && time.Since(start) < 8*time.Second; i++ {
		if _, err := c.Write([]byte{'x'}); err != nil {
			closed = true
			break
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil && !isTimeout(err) {
			closed = true
			break
		}
	}
	c.Close()
	if !closed || time.Since(start) > 5*time.Second {
		t.Errorf("slow body: closed %v after %v (read_timeout 1s); got %q", closed, time.Since(start), got)
	}
	if len(got) > 0 && statusOf(string(got)) != 408 && statusOf(string(got)) != 400 {
		t.Errorf("slow body answered %q", got)
	}
	if n := r.mock.Count(); n != 0 {
		t.Errorf("a partial body reached the upstream (%d requests)", n)
	}
	ok := servedOK(t, r)
	if !ok {
		t.Error("ordinary request failed after a slow body")
	}
	r.stop(t)
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	var unexpected int64
	if !closed {
		unexpected++
	}
	if !ok {
		unexpected++
	}
	sinkOnly(chaosResult{scenario: "client/slow-body", sent: 2, answered: 1, expected: 1, unexpect: unexpected, stored: r.rows.count(nil), leaks: lk}).emit(t)
}

// TestChaosMalformedRequests: oversized, conflicting, invalid or injected
// requests get a clear 4xx (or a clean close) and never reach the upstream
// as anything but a clean request.
func TestChaosMalformedRequests(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	up := startRawUpstream(t, func(c net.Conn, head string) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 14\r\n\r\ndata: [DONE]\n\n")
	})
	var heads []string
	var headsMu sync.Mutex
	up.behave = func(c net.Conn, head string) {
		headsMu.Lock()
		heads = append(heads, head)
		headsMu.Unlock()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Up: ok\r\nContent-Length: 14\r\n\r\ndata: [DONE]\n\n")
	}
	r := startChaosRelay(t, rawRoute("echo", "/chaos/*", up.base(), "sse", ""), nil)
	big := strings.Repeat("a", 20<<10)
	chunkedHdr := "Transfer-Encoding: chunked\r\n"
	raw := func(path, hdr, body string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey + "\r\n" + hdr + "Connection: close\r\n\r\n" + body
	}
	tests := []struct {
		name   string
		req    string
		status []int // any of these, or 0: the relay closes without an answer
	}{
		{"oversized header", relayReq("/chaos/a", "X-Big: "+big+"\r\n", "{}"), []int{431, 400}},
		{"many headers", relayReq("/chaos/a", strings.Repeat("X-Many: 1234567890\r\n", 2000), "{}"), []int{431, 400}},
		{"oversized body", relayReq("/chaos/a", "", strings.Repeat("b", 70000)), []int{413}},
		{"oversized chunked body", raw("/chaos/a", chunkedHdr, "11170\r\n"+strings.Repeat("b", 70000)+"\r\n0\r\n\r\n"), []int{413}},
		{"content-length and chunked", raw("/chaos/a", "Content-Length: 4\r\n"+chunkedHdr, "5\r\nhello\r\n0\r\n\r\n"), []int{400}},
		{"smuggled request via CL.TE", raw("/chaos/a", "Content-Length: 60\r\n"+chunkedHdr,
			"0\r\n\r\nPOST /chaos/smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), []int{400}},
		{"two content-lengths", raw("/chaos/a", "Content-Length: 2\r\nContent-Length: 3\r\n", "{}x"), []int{400}},
		{"invalid chunk size", raw("/chaos/a", chunkedHdr, "zz\r\nhello\r\n0\r\n\r\n"), []int{400}},
		{"chunk without CRLF", raw("/chaos/a", chunkedHdr, "2\r\n{}XX0\r\n\r\n"), []int{400}},
		{"negative content-length", raw("/chaos/a", "Content-Length: -5\r\n", "{}"), []int{400}},
		{"bare LF header injection", relayReq("/chaos/a", "X-A: 1\nX-Evil-LF: 1\r\n", "{}"), []int{200, 400}},
		{"bare CR header injection", relayReq("/chaos/a", "X-A: 1\rX-Evil-CR: 1\r\n", "{}"), []int{200, 400}},
		{"control bytes in tenant", relayReq("/chaos/a", "X-Tenant-ID: other\x01\x7f\r\n", "{}"), []int{403, 400}},
		{"CRLF-encoded path", relayReq("/chaos/a%0d%0aX-Evil-Path:%201%0d%0a", "", "{}"), []int{200, 400, 404}},
		{"NUL in header value", relayReq("/chaos/a", "X-Nul: a\x00b\r\n", "{}"), []int{200, 400}},
		{"obs-fold continuation", relayReq("/chaos/a", "X-Fold: a\r\n X-Evil-Fold: 1\r\n", "{}"), []int{200, 400}},
		{"space before colon", relayReq("/chaos/a", "X-Evil-Space : 1\r\n", "{}"), []int{200, 400}},
	}
	var expected, unexpected int64
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := up.accepted.Load()
			resp := rawExchange(t, r.base, tt.req, 5*time.Second)
			st := statusOf(resp)
			ok := false
			for _, s := range tt.status {
				ok = ok || s == st
			}
			if !ok {
				unexpected++
				t.Errorf("status %d, want one of %v: %.300q", st, tt.status, resp)
				return
			}
			expected++
			if st >= 400 {
				if up.accepted.Load() != before {
					t.Errorf("a rejected request reached the upstream")
				}
				if body := resp[strings.Index(resp, "\r\n\r\n")+4:]; st != 431 && !strings.Contains(body, `"error"`) {
					t.Errorf("4xx without the JSON error: %q", resp)
				}
			}
			for _, h := range strings.Split(resp[:max(strings.Index(resp, "\r\n\r\n"), 0)], "\r\n") {
				if strings.Contains(strings.ToLower(h), "evil") || strings.ContainsAny(h, "\x00\x01\x7f\r\n") {
					t.Errorf("response header reflects the injection: %q", h)
				}
			}
		})
	}
	if !servedOK(t, r) {
		t.Error("ordinary request failed after the malformed ones")
	}
	headsMu.Lock()
	// A bare LF ends a header line (RFC 9112 2.2 lets a recipient accept
	// it) and obs-fold joins lines: X-Evil-Lf and the folded value are the
	// client's own headers, relayed as such. What must never happen: a raw
	// control byte in a line, a request line split or widened by the path,
	// the smuggled request, a header made from the path.
	for _, h := range heads {
		if strings.Contains(strings.ToLower(h), "\r\nx-evil-path") || strings.Contains(h, "smuggled") || strings.ContainsAny(h, "\x00\x01\x7f") {
			t.Errorf("upstream got an injected header or request: %q", h)
		}
		if line, _, _ := strings.Cut(h, "\r\n"); len(strings.Split(line, " ")) != 3 {
			t.Errorf("upstream request line is malformed: %q", line)
		}
		if strings.Contains(h, relayKey) {
			t.Errorf("upstream got the relay key: %q", h)
		}
		for _, l := range strings.Split(strings.TrimSuffix(h, "\r\n\r\n"), "\r\n") {
			if strings.ContainsAny(l, "\r\n") {
				t.Errorf("upstream header line with a bare CR/LF: %q", l)
			}
		}
	}
	headsMu.Unlock()
	for _, row := range r.rows.all() {
		for _, s := range []string{row.ReqHeaders, row.RespHeaders} {
			var m map[string]string
			if err := json.Unmarshal([]byte(s), &m); s != "" && err != nil {
				t.Errorf("row headers are not JSON: %q (%v)", s, err)
			}
			if strings.ContainsAny(s, "\x00\x01\x7f\r\n") || strings.Contains(s, relayKey) {
				t.Errorf("row headers carry raw control bytes or the key: %q", s)
			}
		}
		if strings.ContainsAny(row.Tenant, "\x00\x01\x7f\r\n") {
			t.Errorf("row tenant %q", row.Tenant)
		}
	}
	r.stop(t)
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	sinkOnly(chaosResult{scenario: "client/malformed-requests", sent: int64(len(tests)), answered: int64(len(tests)), expected: expected,
		unexpect: unexpected, stored: r.rows.count(nil), leaks: lk}).emit(t)
}

// TestChaosSlowReader: a client that reads nothing while the upstream
// streams megabytes. The relay holds at most its copy buffer (16 KiB), the
// upstream connection's read buffer (16 KiB), fasthttp's write buffer
// (8 KiB) and the socket buffers the kernel grants; the upstream is
// back-pressured (the mock's writes block), RSS stays flat, and after the
// route's idle_timeout of a blocked write the relay gives the client up
// (client_closed), closing the upstream, whether the stream was copied or
// spliced.
func TestChaosSlowReader(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	r := startChaosRelay(t, "", func(c *Config) { c.Routes[2].IdleTimeout = 3 * time.Second })
	const clients = 4
	before := sampleProc()
	spliced := upstream.SplicedBytes()
	var conns []net.Conn
	for i := 0; i < clients; i++ {
		c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetReadBuffer(4096)
		conns = append(conns, c)
		// 64 MiB of audio per stream; the client reads nothing. Half the
		// streams come with a Content-Length, which the relay splices:
		// those block in a spliced write instead of a copied one.
		hdr := "X-Mock-Chunks: 1024\r\nX-Mock-Chunk-Bytes: 65536\r\n"
		if i%2 == 1 {
			hdr += mockllm.HeaderLength + ": 1\r\n"
		}
		if _, err := io.WriteString(c, relayReq("/v1/audio/speech", hdr, `{"model":"tts"}`)); err != nil {
			t.Fatal(err)
		}
	}
	var peak procSample
	for i := 0; i < 20; i++ { // 2s while the streams are blocked
		time.Sleep(100 * time.Millisecond)
		s := sampleProc()
		peak.rssKB, peak.heapKB = max(peak.rssKB, s.rssKB), max(peak.heapKB, s.heapKB)
	}
	// Whatever reached the client is what the kernel buffered; the rest
	// waits upstream. A relay that buffered for the slow client would have
	// read the whole 256 MiB by now (the mock writes at memory speed).
	growth := (peak.rssKB - before.rssKB) >> 10
	t.Logf("slow readers: before %v, peak %v (growth %d MiB)", before, peak, growth)
	if growth > 64 {
		t.Errorf("RSS grew by %d MiB while 4 clients did not read 64 MiB streams", growth)
	}
	// The blocked streams end after idle_timeout (3s) of a blocked write.
	waitFor(t, 10*time.Second, func() bool { return r.app.relay.Active() == 0 }, "streams to clients that do not read are never ended")
	waitFor(t, 5*time.Second, func() bool { return r.mock.Open() == 0 }, "upstream responses still open after the slow clients were dropped")
	n := r.rows.count(func(rw row) bool { return rw.ErrorType == record.ErrClientClosed })
	if n != clients {
		t.Errorf("%d client_closed rows, want %d", n, clients)
	}
	var bytesOut int64
	for _, rw := range r.rows.all() {
		bytesOut += rw.BytesOut
	}
	t.Logf("bytes relayed to clients that did not read: %d KiB in total", bytesOut>>10)
	if upstream.SplicedBytes() == spliced {
		t.Error("no stream was spliced: the Content-Length ones should have been")
	}
	for _, c := range conns {
		c.Close()
	}
	ok := servedOK(t, r)
	if !ok {
		t.Error("ordinary request failed next to slow readers")
	}
	r.stop(t)
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	var unexpected int64
	if !ok {
		unexpected++
	}
	unexpected += clients - n
	sinkOnly(chaosResult{scenario: fmt.Sprintf("client/slow-reader(peak +%dMiB)", growth), sent: clients + 1, answered: clients + 1,
		expected: n, unexpect: unexpected, stored: r.rows.count(nil), leaks: lk}).emit(t)
}

// TestChaosDisconnectEverywhere: clients that leave at every point of an
// exchange; the relay keeps serving, nothing stays active, nothing leaks.
func TestChaosDisconnectEverywhere(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	r := startChaosRelay(t, "", nil)
	addr := strings.TrimPrefix(r.base, "http://")
	full := relayReq("/v1/chat/completions", "X-Mock-Chunks: 1000\r\nX-Mock-Delay-Ms: 5\r\n", `{"model":"m","stream":true}`)
	slowFirst := relayReq("/v1/chat/completions", "X-Mock-First-Byte-Delay-Ms: 500\r\nX-Mock-Chunks: 1000\r\nX-Mock-Delay-Ms: 5\r\n", `{"model":"m","stream":true}`)
	// Audio with a Content-Length: spliced from socket to socket.
	audio := relayReq("/v1/audio/speech", "X-Mock-Chunks: 1000\r\nX-Mock-Chunk-Bytes: 65536\r\nX-Mock-Delay-Ms: 5\r\n"+mockllm.HeaderLength+": 1\r\n", `{"model":"tts"}`)
	points := []struct {
		name string
		do   func(c net.Conn)
		row  string // expected error_type of the row, "" for no row
	}{
		{"before headers", func(c net.Conn) {}, ""},
		{"mid request line", func(c net.Conn) { io.WriteString(c, full[:10]) }, ""},
		{"mid headers", func(c net.Conn) { io.WriteString(c, full[:60]) }, ""},
		{"mid body upload", func(c net.Conn) { io.WriteString(c, full[:len(full)-5]) }, record.ErrClientClosed},
		{"waiting for first byte", func(c net.Conn) { io.WriteString(c, slowFirst); time.Sleep(150 * time.Millisecond) }, record.ErrClientClosed},
		{"after response headers", func(c net.Conn) {
			io.WriteString(c, full)
			br := bufio.NewReader(c)
			_, _ = br.ReadString('\n')
		}, record.ErrClientClosed},
		{"mid stream", func(c net.Conn) {
			io.WriteString(c, full)
			buf := make([]byte, 4096)
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			got := 0
			for got < 2000 {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				got += n
			}
		}, record.ErrClientClosed},
		{"mid spliced audio", func(c net.Conn) {
			io.WriteString(c, audio)
			buf := make([]byte, 64<<10)
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			for got := 0; got < 1<<20; {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				got += n
			}
		}, record.ErrClientClosed},
	}
	const rounds = 5
	var sent, unexpected int64
	for _, p := range points {
		for i := 0; i < rounds; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).SetLinger(0) // some rounds end in a RST
			if i%2 == 0 {
				_ = c.(*net.TCPConn).SetLinger(-1)
			}
			p.do(c)
			c.Close()
			sent++
		}
	}
	waitFor(t, 10*time.Second, func() bool { return r.app.relay.Active() == 0 }, "requests still active after their clients left")
	waitFor(t, 5*time.Second, func() bool { return r.mock.Open() == 0 }, "upstream responses still open after their clients left")
	served := 0
	for i := 0; i < 5; i++ {
		if servedOK(t, r) {
			served++
		}
	}
	if served != 5 {
		t.Errorf("served %d of 5 after the disconnects", served)
		unexpected += int64(5 - served)
	}
	counts := map[string]int64{}
	for _, rw := range r.rows.all() {
		counts[rw.ErrorType]++
		if rw.Status >= 500 {
			t.Errorf("a client that left was logged as a %d (%s)", rw.Status, rw.ErrorType)
			unexpected++
		}
	}
	// A row exists where the request's head was read whole: the point in
	// its body and the four after the request end as client_closed. A
	// request cut short in its head is no request: no row, and never a 5xx.
	want := map[string]int64{record.ErrClientClosed: 5 * rounds, "": 5}
	if counts[record.ErrClientClosed] != want[record.ErrClientClosed] || counts[""] != 5 || len(counts) != 2 {
		t.Errorf("rows by error_type %v: want %v", counts, want)
		unexpected++
	}
	r.stop(t)
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	sinkOnly(chaosResult{scenario: "client/disconnect-everywhere", sent: sent + 5, answered: int64(served), expected: sent,
		unexpect: unexpected, stored: r.rows.count(nil), leaks: lk}).emit(t)
}

// TestChaosIdleKeepAlive: many idle keep-alive connections (1,000; under
// make chaos as many as the file descriptor limit allows, up to 10,000) do
// not stop others being served.
func TestChaosIdleKeepAlive(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	n := 1000
	if chaosLong() {
		n = 9000 // both ends live in this process: 2 fds each, limit 20,000
	}
	r := startChaosRelay(t, "", nil)
	addr := strings.TrimPrefix(r.base, "http://")
	before := sampleProc()
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	req := "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"
	var failed int64
	buf := make([]byte, 1024)
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			failed++
			continue
		}
		if k, err := c.Read(buf); err != nil || statusOf(string(buf[:k])) != 200 {
			failed++
		}
		_ = c.SetDeadline(time.Time{})
	}
	held := sampleProc()
	t.Logf("%d idle keep-alive connections: before %v, holding %v", n, before, held)
	start := time.Now()
	served := 0
	for i := 0; i < 20; i++ {
		if servedOK(t, r) {
			served++
		}
	}
	took := time.Since(start)
	if served != 20 || took > 10*time.Second {
		t.Errorf("served %d of 20 in %v next to %d idle connections", served, took, n)
	}
	// The idle connections are still open and usable.
	alive := 0
	for _, c := range conns[:min(len(conns), 50)] {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, req); err == nil {
			if k, err := c.Read(buf); err == nil && statusOf(string(buf[:k])) == 200 {
				alive++
			}
		}
	}
	if alive != min(len(conns), 50) {
		t.Errorf("%d of 50 idle connections answered again", alive)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	r.stop(t)
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	sinkOnly(chaosResult{scenario: fmt.Sprintf("client/idle-keepalive-%d(+%dMiB)", n, (held.rssKB-before.rssKB)>>10), sent: int64(n + 20), answered: int64(n) - failed + int64(served),
		unexpect: failed + int64(20-served), stored: r.rows.count(nil), leaks: lk}).emit(t)
}
