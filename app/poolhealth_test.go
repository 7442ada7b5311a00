package app

import (
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestPoolLastCutKeepsAttempts: when the last target answers its head and
// then fails before the body's first byte, the client gets the relay's
// 502/504 and the row's response headers keep the record of every attempt,
// the last one's status become that failure.
func TestPoolLastCutKeepsAttempts(t *testing.T) {
	for _, tc := range []struct{ mode, want string }{
		{cutReset, "dead=upstream_connect cut=upstream_reset"},
		{cutSilent, "dead=upstream_connect cut=upstream_timeout"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cut, _ := cutTarget(t, tc.mode)
			t.Setenv("TEST_PROVIDER_KEY", providerKey)
			p := startPool(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    idle_timeout: 1s
    upstreams:
      - {name: dead, url: "`+deadURL(t)+`", weight: 1000000}
      - {name: cut, url: "`+cut+`"}
`, "rate_limit: {disabled: true}"))
			a := postClose(t, p.base, cutBody(100))
			if a.status != 502 && a.status != 504 {
				t.Fatalf("client got %d, want the relay's 502 or 504", a.status)
			}
			row := waitPoolRows(t, p, 1)[0]
			if !strings.Contains(row.RespHeaders, `"x-relay-attempts":"`+tc.want+`"`) {
				t.Errorf("row's response headers %s, want the attempts %q", row.RespHeaders, tc.want)
			}
			if strings.Contains(row.RespHeaders, "x-cut-target") {
				t.Errorf("row's response headers %s hold the head the client never got", row.RespHeaders)
			}
		})
	}
}

// TestPoolServerTimeoutLeavesHealth: a target that answers its head and
// stays silent until server.timeout (shorter than idle_timeout) ends the
// request gets the client a 504, and is not ejected for it, as the last
// attempt or as one that is not (the request's own time ran out).
func TestPoolServerTimeoutLeavesHealth(t *testing.T) {
	for _, withDead := range []bool{false, true} {
		name := "one-target"
		if withDead {
			name = "last-of-two"
		}
		t.Run(name, func(t *testing.T) {
			cut, _ := cutTarget(t, cutSilent)
			t.Setenv("TEST_PROVIDER_KEY", providerKey)
			ups := "      - {name: cut, url: \"" + cut + "\"}\n"
			if withDead {
				ups = "      - {name: dead, url: \"" + deadURL(t) + "\", weight: 1000000}\n" + ups
			}
			y := poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    idle_timeout: 20s
    health: {max_fails: 1, cooldown: 1h}
    upstreams:
`+ups, "rate_limit: {disabled: true}")
			y = strings.Replace(y, "  shutdown_grace: 5s", "  shutdown_grace: 5s\n  timeout: 1500ms", 1)
			p := startPool(t, y)
			if a := postClose(t, p.base, cutBody(100)); a.status != 504 {
				t.Fatalf("client got %d, want 504", a.status)
			}
			waitPoolRows(t, p, 1)
			if m := p.metric(`relay_upstream_ejections_total{route="pool",target="cut"}`); !strings.HasSuffix(m, " 0") {
				t.Errorf("server.timeout ejected the target: %q", m)
			}
		})
	}
}

// TestPoolUnsetKeyTarget: a target of a pool whose key variable is unset is
// never picked; the start-up log names it and its variable, and its
// relay_upstream_healthy reads 0.
func TestPoolUnsetKeyTarget(t *testing.T) {
	_, up := mock(t, "")
	t.Setenv("HK_A", providerKey)
	var log servicetest.Buffer
	y := poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    upstreams:
      - {name: a, url: "`+up+`", auth_env: HK_A}
      - {name: b, url: "`+up+`", auth_env: HK_B_UNSET_IN_THIS_TEST}
`, "rate_limit: {disabled: true}")
	y = strings.Replace(y, "level: error", "level: warn", 1)
	p := startPoolLog(t, y, &log)
	if got := p.send(t, "/v1/chat/completions", 4, 1, nil); got[200] != 4 {
		t.Fatalf("statuses %v, want 4 × 200", got)
	}
	if m := p.metric(`relay_upstream_healthy{route="pool",target="b"}`); !strings.HasSuffix(m, " 0") {
		t.Errorf("the unset target's health reads %q, want 0", m)
	}
	if m := p.metric(`relay_upstream_healthy{route="pool",target="a"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("the configured target's health reads %q, want 1", m)
	}
	if s := log.String(); !strings.Contains(s, "target=b") || !strings.Contains(s, "auth_env=HK_B_UNSET_IN_THIS_TEST") {
		t.Errorf("no warning names the unset target: %s", s)
	}
}
