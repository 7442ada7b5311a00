package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// How a cutTarget fails after its response head.
const (
	cutClose    = "close"    // closes the connection
	cutReset    = "reset"    // resets it (SO_LINGER 0)
	cutSizeLine = "sizeline" // sends a chunk's size line, then closes
	cutSilent   = "silent"   // says nothing more until the relay gives up
)

// bodies keeps the request bodies a test upstream received, in order.
type bodies struct {
	mu sync.Mutex
	b  []string
}

func (s *bodies) add(b []byte) {
	s.mu.Lock()
	s.b = append(s.b, string(b))
	s.mu.Unlock()
}

func (s *bodies) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.b...)
}

// cutTarget is an upstream that reads each request, body and all, answers
// an SSE response head (chunked) and then fails as mode says, before any
// byte of its body. It returns its URL and the bodies it received.
func cutTarget(t *testing.T, mode string) (string, *bodies) {
	t.Helper()
	got := &bodies{}
	url := rawTarget(t, func(c net.Conn, body []byte) {
		got.add(body)
		head := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nX-Cut-Target: 1\r\n\r\n"
		if mode == cutSizeLine {
			head += "1a\r\n"
		}
		if _, err := io.WriteString(c, head); err != nil {
			return
		}
		switch mode {
		case cutReset:
			time.Sleep(50 * time.Millisecond) // the head first, then the reset
			_ = c.(*net.TCPConn).SetLinger(0)
		case cutSilent:
			_, _ = io.Copy(io.Discard, c) // until the relay closes
		}
	})
	return url, got
}

// rawTarget is an upstream that reads each request, body and all, and
// leaves its answer to answer; the connection closes after it. It returns
// the upstream's URL.
func rawTarget(t *testing.T, answer func(c net.Conn, body []byte)) string {
	t.Helper()
	return "http://" + connTarget(t, func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		answer(c, b)
	})
}

// connTarget is an upstream on loopback that runs serve on each connection
// it accepts; a connection closes when its serve returns, or at the test's
// end, which waits for every serve. It returns the upstream's address.
func connTarget(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			mu.Lock()
			open[c] = true
			mu.Unlock()
			go func() {
				defer conns.Done()
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					_ = c.Close()
				}()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range open {
			_ = c.Close()
		}
		mu.Unlock()
		conns.Wait()
	})
	return ln.Addr().String()
}

// liveEvents is what a liveTarget streams: several events, each flushed on
// its own.
var liveEvents = []string{`{"n":1}`, `{"n":2}`, `{"n":3}`, `{"n":4}`, `[DONE]`}

// liveStream is liveEvents as the SSE body the client should get.
func liveStream() string {
	var b strings.Builder
	for _, e := range liveEvents {
		b.WriteString("data: " + e + "\n\n")
	}
	return b.String()
}

// liveTarget is an upstream that streams liveEvents, one flushed write each,
// and keeps the request bodies it received.
func liveTarget(t *testing.T) (string, *bodies) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := &bodies{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.add(b)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Live-Target", "1")
		w.WriteHeader(http.StatusOK)
		for _, e := range liveEvents {
			_, _ = io.WriteString(w, "data: "+e+"\n\n")
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), got
}

// cutPool starts a relay whose route "pool" has the targets cut (weighted
// so that it is always tried first) and live, with the route settings
// extra (YAML lines indented by four spaces) and server.detach_above.
func cutPool(t *testing.T, cut, live, extra, detach string) *poolRelay {
	t.Helper()
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	return startPool(t, cutPoolConfig(t, cut, live, extra, detach))
}

// cutPoolConfig is cutPool's configuration: idle_timeout 1s.
func cutPoolConfig(t *testing.T, cut, live, extra, detach string) string {
	y := poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    idle_timeout: 1s
`+extra+`
    upstreams:
      - {name: cut, url: "`+cut+`", weight: 1000000}
      - {name: live, url: "`+live+`"}
`, "rate_limit: {disabled: true}")
	return strings.Replace(y, "  shutdown_grace: 5s", "  shutdown_grace: 5s\n  detach_above: "+detach, 1)
}

// cutAnswer is what a client read off its connection to the relay: every
// byte until the relay closed it, and the response parsed from them.
type cutAnswer struct {
	raw    string
	status int
	header http.Header
	body   string
	rest   string // bytes after the response: none expected
}

// postClose sends a streaming chat request with body to the relay over a
// connection of its own, asking the relay to close it after the answer,
// reads everything until it does and parses the answer.
func postClose(t *testing.T, base, body string) cutAnswer {
	t.Helper()
	raw, err := sendClose(t, base, body)
	if err != nil {
		t.Fatalf("reading the answer: %v (got %q)", err, raw)
	}
	return parseAnswer(t, raw)
}

// sendRaw writes req, a whole raw request (which should ask for the
// connection's close), on a connection of its own to the relay at base
// and parses the answer read until the relay closes it.
func sendRaw(t *testing.T, base, req string) cutAnswer {
	t.Helper()
	return parseAnswer(t, []byte(rawExchange(t, base, req, 60*time.Second)))
}

// parseAnswer parses raw, every byte a client read off its connection.
func parseAnswer(t *testing.T, raw []byte) cutAnswer {
	t.Helper()
	br := bufio.NewReader(bytes.NewReader(raw))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v (got %q)", err, raw)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("answer body: %v (got %q)", err, raw)
	}
	rest, _ := io.ReadAll(br)
	return cutAnswer{raw: string(raw), status: resp.StatusCode, header: resp.Header, body: string(b), rest: string(rest)}
}

// cutBody is a request body too large to be held (heldrequest.go) when
// pad is, recognizable byte for byte.
func cutBody(pad int) string {
	var b strings.Builder
	for i := 0; b.Len() < pad; i++ {
		fmt.Fprintf(&b, "token-%d ", i)
	}
	return `{"model":"m","stream":true,"messages":[{"role":"user","content":"` + b.String() + `"}]}`
}

// TestCutBeforeBodyFailsOver: a target that sends its response head and
// then closes, resets, sends only a chunk size or stays silent past
// idle_timeout has given the client nothing: the request, its body intact,
// goes to the next target, whose whole stream the client gets behind one
// response head; the row lists both attempts and names the serving
// target, and the cut target's failures count towards its ejection. On
// the server's goroutine and detached alike, with a small body (held) and
// a large one.
func TestCutBeforeBodyFailsOver(t *testing.T) {
	for _, tt := range []struct {
		mode, extra, errType string
	}{
		{cutClose, "", record.ErrUpstreamReset},
		{cutReset, "", record.ErrUpstreamReset},
		{cutSizeLine, "", record.ErrUpstreamReset},
		{cutSilent, "", record.ErrUpstreamTimeout},
		{cutClose, "    failover: {on: [connect]}", record.ErrUpstreamReset},
		{cutSilent, "    failover: {on: [timeout]}", record.ErrUpstreamTimeout},
	} {
		for _, detach := range []string{"0", "100000"} {
			name := tt.mode + "/" + strings.TrimSpace(tt.extra) + "/detach_above " + detach
			t.Run(name, func(t *testing.T) {
				cut, cutGot := cutTarget(t, tt.mode)
				live, liveGot := liveTarget(t)
				// max_fails 2: the second failure ejects the cut target.
				p := cutPool(t, cut, live, tt.extra+"\n    health: {max_fails: 2, cooldown: 1h}", detach)
				sent := []string{cutBody(100), cutBody(40 << 10)}
				for i, body := range sent {
					a := postClose(t, p.base, body)
					if a.status != 200 || a.body != liveStream() || a.rest != "" {
						t.Fatalf("request %d: status %d body %q, then %q; want 200 and the live target's stream", i, a.status, a.body, a.rest)
					}
					if n := strings.Count(a.raw, "HTTP/1."); n != 1 || a.header.Get("X-Cut-Target") != "" || a.header.Get("X-Live-Target") != "1" {
						t.Fatalf("request %d: %d response heads, headers %v: want the live target's head alone", i, n, a.header)
					}
				}
				if got := cutGot.all(); len(got) != 2 || got[0] != sent[0] || got[1] != sent[1] {
					t.Errorf("the cut target received %d bodies, intact: %v", len(got), len(got) == 2 && got[0] == sent[0] && got[1] == sent[1])
				}
				if got := liveGot.all(); len(got) != 2 || got[0] != sent[0] || got[1] != sent[1] {
					t.Errorf("the live target received %d bodies, intact: %v", len(got), len(got) == 2 && got[0] == sent[0] && got[1] == sent[1])
				}
				// A third request skips the ejected target.
				if a := postClose(t, p.base, sent[0]); a.status != 200 || a.body != liveStream() {
					t.Fatalf("request after the ejection: status %d body %q", a.status, a.body)
				}
				rows := waitPoolRows(t, p, 3)
				want := `"x-relay-attempts":"cut=` + tt.errType + ` live=200"`
				for i, r := range rows[:2] {
					if r.Upstream != live+"#live" || r.Status != 200 || r.ErrorType != "" || !strings.Contains(r.RespHeaders, want) || r.TTFB <= 0 {
						t.Errorf("row %d %+v: want served by live, status 200, no error, response headers with %s", i, r, want)
					}
				}
				if r := rows[2]; r.Upstream != live+"#live" || strings.Contains(r.RespHeaders, "x-relay-attempts") {
					t.Errorf("row after the ejection %+v: want live alone", r)
				}
				if m := p.metric(`relay_upstream_ejections_total{route="pool",target="cut"}`); !strings.HasSuffix(m, " 1") {
					t.Errorf("ejections of the cut target: %q, want 1 after 2 failures (max_fails 2)", m)
				}
				if m := p.metric(`relay_upstream_healthy{route="pool",target="live"}`); !strings.HasSuffix(m, " 1") {
					t.Errorf("healthy gauge of live: %q", m)
				}
			})
		}
	}
}

// TestCutBeforeBodyNoFailover: with no attempt left (max_attempts 1) or
// the cut's condition off, the client gets the relay's own 502
// upstream_reset or 504 upstream_timeout, as a route of one target does,
// and the live target gets nothing.
func TestCutBeforeBodyNoFailover(t *testing.T) {
	for _, tt := range []struct {
		mode, extra, errType string
		status               int
	}{
		{cutClose, "    failover: {max_attempts: 1}", record.ErrUpstreamReset, 502},
		{cutClose, "    failover: {on: [timeout, 5xx]}", record.ErrUpstreamReset, 502},
		{cutClose, "    failover: {on: [5xx]}", record.ErrUpstreamReset, 502},
		{cutSilent, "    failover: {max_attempts: 1}", record.ErrUpstreamTimeout, 504},
		{cutSilent, "    failover: {on: [connect, 5xx]}", record.ErrUpstreamTimeout, 504},
		{cutSilent, "    failover: {on: [429]}", record.ErrUpstreamTimeout, 504},
	} {
		t.Run(tt.mode+"/"+strings.TrimSpace(tt.extra), func(t *testing.T) {
			cut, _ := cutTarget(t, tt.mode)
			live, liveGot := liveTarget(t)
			p := cutPool(t, cut, live, tt.extra, "0")
			a := postClose(t, p.base, cutBody(100))
			var e struct {
				Error struct{ Type, Message string } `json:"error"`
			}
			if a.status != tt.status || json.Unmarshal([]byte(a.body), &e) != nil || e.Error.Type != tt.errType ||
				!strings.Contains(e.Error.Message, "body") || a.header.Get("X-Request-Id") == "" {
				t.Fatalf("status %d headers %v body %q: want %d %s about the body, with the request id", a.status, a.header, a.body, tt.status, tt.errType)
			}
			if n := strings.Count(a.raw, "HTTP/1."); n != 1 || a.header.Get("X-Cut-Target") != "" || a.rest != "" {
				t.Fatalf("%d response heads, headers %v, then %q: want the relay's answer alone", n, a.header, a.rest)
			}
			if got := liveGot.all(); len(got) != 0 {
				t.Errorf("the live target got %d requests, want none", len(got))
			}
			r := waitPoolRows(t, p, 1)[0]
			if r.Upstream != cut+"#cut" || r.Status != tt.status || r.ErrorType != tt.errType {
				t.Errorf("row %+v: want the cut target, %d %s", r, tt.status, tt.errType)
			}
		})
	}
}

// TestCutBeforeBodyClientLeaves: a client that leaves while the relay
// awaits the first byte of a target's body ends the attempts, as one that
// leaves before the head does: the next target gets nothing, and the row
// says client_closed. The idle timeout is far longer than the test waits
// for the row: only the client's leaving can end the wait in time.
func TestCutBeforeBodyClientLeaves(t *testing.T) {
	cut, cutGot := cutTarget(t, cutSilent)
	live, liveGot := liveTarget(t)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, strings.Replace(cutPoolConfig(t, cut, live, "", "0"), "idle_timeout: 1s", "idle_timeout: 5m", 1))
	leaveWhileCut(t, p, cutGot)
	r := waitPoolRows(t, p, 1)[0]
	if r.ErrorType != record.ErrClientClosed || r.Upstream != cut+"#cut" {
		t.Errorf("row %+v: want client_closed on the cut target", r)
	}
	if got := liveGot.all(); len(got) != 0 {
		t.Errorf("the live target got %d requests after the client left, want none", len(got))
	}
}

// waitPoolRows waits (generously) for n rows of p and returns them in the
// order they were finished.
func waitPoolRows(t *testing.T, p *poolRelay, n int) []poolRow {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows := p.sink.all()
		if len(rows) >= n {
			return rows
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows, want %d", len(rows), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sendClose sends a streaming chat request with body to the relay over a
// connection of its own (Connection: close) and returns every byte until
// the relay closes it, and the read's error.
func sendClose(t *testing.T, base, body string) ([]byte, error) {
	t.Helper()
	c := dialChat(t, base, body, "Connection: close\r\n")
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	return io.ReadAll(c)
}

// dialChat opens a connection of its own to the relay at base and sends
// a streaming chat request with body and the header lines extra on it.
func dialChat(t *testing.T, base, body, extra string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + relayKey +
		"\r\n" + extra + "Content-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

// leaveWhileCut sends a streaming chat request to p, waits until the cut
// target has it (its head is on its way) and a little more, and leaves:
// the connection closes with the answer not yet begun.
func leaveWhileCut(t *testing.T, p *poolRelay, cutGot *bodies) {
	t.Helper()
	c := dialChat(t, p.base, cutBody(100), "")
	deadline := time.Now().Add(30 * time.Second)
	for len(cutGot.all()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the cut target got no request")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	_ = c.Close()
}

// TestCutBeforeBodyKeepsRateHeaders: the relay's own 502 for an upstream
// that cut its answer before the body keeps the X-RateLimit-* headers of
// the request's decision, as the upstream's head it replaces had them: the
// request took its token all the same.
func TestCutBeforeBodyKeepsRateHeaders(t *testing.T) {
	for _, detach := range []string{"0", "100000"} { // every stream detached, and none
		cut, _ := cutTarget(t, cutClose)
		live, _ := liveTarget(t)
		t.Setenv("TEST_PROVIDER_KEY", providerKey)
		y := strings.Replace(cutPoolConfig(t, cut, live, "    failover: {max_attempts: 1}", detach),
			"rate_limit: {disabled: true}", "rate_limit: {default: 100}", 1)
		p := startPool(t, y)
		a := postClose(t, p.base, cutBody(100))
		if a.status != 502 || a.header.Get("X-RateLimit-Limit") != "100" || a.header.Get("X-RateLimit-Remaining") != "99" ||
			a.header.Get("X-RateLimit-Reset") == "" {
			t.Errorf("detach_above %s: status %d headers %v: want a 502 with the request's X-RateLimit-* headers (limit 100, 99 left)",
				detach, a.status, a.header)
		}
	}
}
