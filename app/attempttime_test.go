package app

import (
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// attemptPool starts a relay whose route "pool" tries first (by weight)
// then second, with the route settings extra and server.timeout
// serverTimeout.
func attemptPool(t *testing.T, first, second, extra, serverTimeout string) *poolRelay {
	t.Helper()
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	y := poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
`+extra+`
    upstreams:
      - {name: first, url: "`+first+`", weight: 1000000}
      - {name: second, url: "`+second+`"}
`, "rate_limit: {disabled: true}")
	return startPool(t, strings.Replace(y, "  shutdown_grace: 5s", "  shutdown_grace: 5s\n  timeout: "+serverTimeout, 1))
}

// TestConnectCutByRequestTimeout: connects that hang are bounded by the
// whole request's server.timeout, not only by connect_timeout: the answer
// (504) comes when the request's time is up, the next target is not tried
// past it, and the target whose connect was cut short keeps its health.
// Each connect used to run its whole connect_timeout (20 s here), one
// target after the other.
func TestConnectCutByRequestTimeout(t *testing.T) {
	first, second := "http://"+stuckListener(t), "http://"+stuckListener(t)
	p := attemptPool(t, first, second, "    connect_timeout: 20s\n    health: {max_fails: 1, cooldown: 1h}", "2s")
	start := time.Now()
	a := postClose(t, p.base, cutBody(100))
	took := time.Since(start)
	if a.status != 504 || !strings.Contains(a.body, record.ErrUpstreamConnect) {
		t.Fatalf("status %d body %q; want 504 %s", a.status, a.body, record.ErrUpstreamConnect)
	}
	// 2 s of server.timeout; connect_timeout is 20 s.
	if took > 15*time.Second {
		t.Fatalf("answered after %s; want about server.timeout (2s)", took)
	}
	r := waitPoolRows(t, p, 1)[0]
	if r.Upstream != first+"#first" || r.Status != 504 || r.ErrorType != record.ErrUpstreamConnect {
		t.Errorf("row %+v: want the first target, 504 %s", r, record.ErrUpstreamConnect)
	}
	if m := p.metric(`relay_upstream_ejections_total{route="pool",target="first"}`); strings.HasSuffix(m, " 1") {
		t.Errorf("the first target was ejected (%q): its connect was cut by the request's time, not failed", m)
	}
}

// TestClientLeavesDuringConnect: a client that leaves while the relay
// connects to the first target (a connect is not watched) gets no attempt
// on the next one; the row says client_closed on the first target. The
// next target used to get the request once the connect timed out.
func TestClientLeavesDuringConnect(t *testing.T) {
	first := "http://" + stuckListener(t)
	live, liveGot := liveTarget(t)
	p := attemptPool(t, first, live, "    connect_timeout: 2s", "5m")
	c := dialChat(t, p.base, cutBody(100), "")
	time.Sleep(300 * time.Millisecond)
	_ = c.Close()
	r := waitPoolRows(t, p, 1)[0]
	if r.ErrorType != record.ErrClientClosed || r.Upstream != first+"#first" {
		t.Errorf("row %+v: want client_closed on the first target", r)
	}
	if got := liveGot.all(); len(got) != 0 {
		t.Errorf("the next target got %d requests after the client left, want none", len(got))
	}
}

// TestFirstBodyByteCutByRequestTimeout: an attempt whose wait for the
// body's first byte server.timeout ends (its head came, then nothing; the
// idle timeout is far longer) ends the request: 504 upstream_timeout on
// that target, which keeps its health (max_fails 1 would eject it), and
// no attempt on the next, which has no time left. It used to be ejected,
// and the row named the next target, which never got the request.
func TestFirstBodyByteCutByRequestTimeout(t *testing.T) {
	cut, cutGot := cutTarget(t, cutSilent)
	live, liveGot := liveTarget(t)
	p := attemptPool(t, cut, live, "    first_byte_timeout: 1s\n    idle_timeout: 1m\n    health: {max_fails: 1, cooldown: 1h}", "2s")
	a := postClose(t, p.base, cutBody(100))
	if a.status != 504 || !strings.Contains(a.body, record.ErrUpstreamTimeout) {
		t.Fatalf("status %d body %q; want 504 %s", a.status, a.body, record.ErrUpstreamTimeout)
	}
	if len(cutGot.all()) != 1 || len(liveGot.all()) != 0 {
		t.Fatalf("requests: %d to the cut target, %d to the next; want 1 and 0", len(cutGot.all()), len(liveGot.all()))
	}
	r := waitPoolRows(t, p, 1)[0]
	if r.Upstream != cut+"#first" || r.ErrorType != record.ErrUpstreamTimeout || strings.Contains(r.RespHeaders, "second=") {
		t.Errorf("row %+v: want upstream_timeout on the first target, no attempt on the second", r)
	}
	if m := p.metric(`relay_upstream_ejections_total{route="pool",target="first"}`); strings.HasSuffix(m, " 1") {
		t.Errorf("the first target was ejected (%q): the request's time ran out, the target did not fail", m)
	}
}
