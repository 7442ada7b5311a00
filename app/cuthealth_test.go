package app

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestCutBeforeBodyLastAttemptCountsForHealth: a target that sends its
// response head and then closes, resets or stays silent before the first
// byte of its body on the last attempt (max_attempts 1: no failover) gets
// the client the relay's 502 or 504, and counts as one failure of the
// target, once: with max_fails 2 the first such cut leaves it in, the
// second ejects it (relay_upstream_ejections_total, relay_upstream_healthy),
// and the next request goes to the other target. On the server's
// goroutine and detached alike.
func TestCutBeforeBodyLastAttemptCountsForHealth(t *testing.T) {
	for _, tt := range []struct {
		mode, detach, errType string
		status                int
	}{
		{cutClose, "0", record.ErrUpstreamReset, 502},
		{cutClose, "100000", record.ErrUpstreamReset, 502},
		{cutReset, "0", record.ErrUpstreamReset, 502},
		{cutSizeLine, "100000", record.ErrUpstreamReset, 502},
		{cutSilent, "100000", record.ErrUpstreamTimeout, 504},
	} {
		t.Run(tt.mode+"/detach_above "+tt.detach, func(t *testing.T) {
			cut, cutGot := cutTarget(t, tt.mode)
			live, liveGot := liveTarget(t)
			p := cutPool(t, cut, live, "    failover: {max_attempts: 1}\n    health: {max_fails: 2, cooldown: 1m}", tt.detach)
			ejections := `relay_upstream_ejections_total{route="pool",target="cut"}`
			healthy := `relay_upstream_healthy{route="pool",target="cut"}`
			for i := 1; i <= 2; i++ {
				a := postClose(t, p.base, cutBody(100))
				var e struct {
					Error struct{ Type string } `json:"error"`
				}
				if a.status != tt.status || json.Unmarshal([]byte(a.body), &e) != nil || e.Error.Type != tt.errType {
					t.Fatalf("cut %d: status %d body %q: want %d %s", i, a.status, a.body, tt.status, tt.errType)
				}
				waitPoolRows(t, p, i)
				want := " 0"
				if i == 2 {
					want = " 1"
				}
				if m := p.metric(ejections); !strings.HasSuffix(m, want) {
					t.Fatalf("after %d cuts (max_fails 2): %q, want%s", i, m, want)
				}
				want = " 1"
				if i == 2 {
					want = " 0"
				}
				if m := p.metric(healthy); !strings.HasSuffix(m, want) {
					t.Fatalf("after %d cuts (max_fails 2): %q, want%s", i, m, want)
				}
			}
			if n := len(cutGot.all()); n != 2 {
				t.Fatalf("the cut target got %d requests, want 2", n)
			}
			// Ejected: the next request goes to the live target.
			a := postClose(t, p.base, cutBody(100))
			if a.status != 200 || a.body != liveStream() {
				t.Fatalf("after the ejection: status %d body %q: want the live target's stream", a.status, a.body)
			}
			if len(liveGot.all()) != 1 || len(cutGot.all()) != 2 {
				t.Errorf("live got %d, cut %d requests: want 1 and 2", len(liveGot.all()), len(cutGot.all()))
			}
		})
	}
}

// midCutTarget is an upstream that answers an SSE head and one event, and
// then closes the connection: a stream cut after its first byte.
func midCutTarget(t *testing.T) string {
	t.Helper()
	return rawTarget(t, func(c net.Conn, _ []byte) {
		ev := "data: {\"n\":1}\n\n"
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"+
			strconv.FormatInt(int64(len(ev)), 16)+"\r\n"+ev+"\r\n")
		time.Sleep(50 * time.Millisecond)
	})
}

// TestCutAfterFirstByteNotCountedForHealth: a stream cut after the first
// byte of its body went to the client does not count against its target
// (README, Passive health): max_fails 1 and three such cuts leave it in.
func TestCutAfterFirstByteNotCountedForHealth(t *testing.T) {
	cut := midCutTarget(t)
	live, liveGot := liveTarget(t)
	p := cutPool(t, cut, live, "    failover: {max_attempts: 1}\n    health: {max_fails: 1, cooldown: 1m}", "0")
	for i := 1; i <= 3; i++ {
		raw := postRaw(t, p.base, cutBody(100))
		if !strings.HasPrefix(raw, "HTTP/1.1 200 ") || !strings.Contains(raw, `{"n":1}`) {
			t.Fatalf("cut %d: got %q: want a 200 and the first event", i, raw)
		}
		r := waitPoolRows(t, p, i)[i-1]
		if r.Upstream != cut+"#cut" || r.ErrorType != record.ErrUpstreamReset {
			t.Fatalf("row %+v: want upstream_reset on the cut target", r)
		}
	}
	if m := p.metric(`relay_upstream_ejections_total{route="pool",target="cut"}`); !strings.HasSuffix(m, " 0") {
		t.Errorf("%q: a cut after the first byte counted against the target", m)
	}
	if n := len(liveGot.all()); n != 0 {
		t.Errorf("the live target got %d requests, want none", n)
	}
}

// postRaw sends a streaming chat request to the relay over a connection of
// its own (Connection: close) and returns every byte until the relay
// closes it.
func postRaw(t *testing.T, base, body string) string {
	t.Helper()
	raw, _ := sendClose(t, base, body)
	return string(raw)
}

// attemptsTarget is an upstream whose answer carries its own
// X-Relay-Attempts header (a relay in front of it, or a forgery).
func attemptsTarget(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Before", "1")
		w.Header().Set("X-Relay-Attempts", `forged=200 "quoted"`)
		w.Header().Set("X-Zafter", "2")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, liveStream())
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestUpstreamRelayAttemptsHeaderNotStored: the row's "x-relay-attempts"
// is the relay's record of its attempts alone. An upstream's own
// X-Relay-Attempts field is not stored: after a failover the row's header
// JSON names the key once, with the relay's value; on one attempt it has
// no such key. The other headers are kept.
func TestUpstreamRelayAttemptsHeaderNotStored(t *testing.T) {
	serving := attemptsTarget(t)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	dead := deadURL(t)
	p := startPool(t, poolConfig(t, `
  - name: failover
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstreams:
      - {name: dead, url: "`+dead+`", weight: 1000000}
      - {name: serving, url: "`+serving+`"}
  - name: single
    path: /v1/completions
    auth_env: TEST_PROVIDER_KEY
    upstreams:
      - {name: serving, url: "`+serving+`"}
`, "rate_limit: {disabled: true}"))
	for i, tt := range []struct{ path, want string }{
		{"/v1/chat/completions", "dead=upstream_connect serving=200"},
		{"/v1/completions", ""},
	} {
		if code := p.try(tt.path, nil); code != 200 {
			t.Fatalf("%s: status %d", tt.path, code)
		}
		r := waitPoolRows(t, p, i+1)[i]
		if n := strings.Count(r.RespHeaders, `"x-relay-attempts"`); tt.want == "" && n != 0 || tt.want != "" && n != 1 {
			t.Fatalf("%s: %q names x-relay-attempts %d times", tt.path, r.RespHeaders, n)
		}
		var h map[string]string
		if err := json.Unmarshal([]byte(r.RespHeaders), &h); err != nil {
			t.Fatalf("%s: %q: %v", tt.path, r.RespHeaders, err)
		}
		if h["x-relay-attempts"] != tt.want || h["x-before"] != "1" || h["x-zafter"] != "2" || strings.Contains(r.RespHeaders, "forged") {
			t.Errorf("%s: %q: want x-relay-attempts %q, the other headers kept, nothing forged", tt.path, r.RespHeaders, tt.want)
		}
	}
}

// TestCutBeforeBodyClientLeavesNotCounted: a client that leaves while the
// last attempt's target, its head sent, has sent no byte of its body says
// nothing about the target: with max_fails 1 it stays in.
func TestCutBeforeBodyClientLeavesNotCounted(t *testing.T) {
	cut, cutGot := cutTarget(t, cutSilent)
	live, _ := liveTarget(t)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	y := cutPoolConfig(t, cut, live, "    failover: {max_attempts: 1}\n    health: {max_fails: 1, cooldown: 1m}", "0")
	p := startPool(t, strings.Replace(y, "idle_timeout: 1s", "idle_timeout: 5m", 1))
	leaveWhileCut(t, p, cutGot)
	if r := waitPoolRows(t, p, 1)[0]; r.ErrorType != record.ErrClientClosed {
		t.Fatalf("row %+v: want client_closed", r)
	}
	if m := p.metric(`relay_upstream_ejections_total{route="pool",target="cut"}`); !strings.HasSuffix(m, " 0") {
		t.Errorf("%q: the client's leaving counted against the target", m)
	}
}
