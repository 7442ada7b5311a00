package app

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

// TestPoolSkipsTargetAtMaxConns: a target whose connections are all taken
// (max_conns: 1, held by a long request) is passed over while another target
// has room, as nginx's max_conns does: before, round-robin sent every other
// request to it, where it waited connect_timeout for a connection and then
// failed over, its row blaming the busy target (a=upstream_connect b=200).
func TestPoolSkipsTargetAtMaxConns(t *testing.T) {
	ma, a := mock(t, providerKey)
	mb, b := mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    max_conns: 1
    connect_timeout: 20s
    failover: {on: [connect, timeout, 429, 5xx]}
    upstreams:
      - {name: a, url: "`+a+`"}
      - {name: b, url: "`+b+`"}
`, "rate_limit: {disabled: true}"))

	// The first pick is a (equal weights, a listed first): an answer that
	// waits 10 s for its first byte holds a's one connection.
	var wg sync.WaitGroup
	wg.Add(1)
	long := 0
	go func() {
		defer wg.Done()
		long = p.try("/v1/chat/completions", map[string]string{mockllm.HeaderFirstByteDelay: "10000"})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for ma.Open() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if ma.Open() != 1 {
		t.Fatalf("the long request is not open on a (a has %d open, b %d)", ma.Open(), mb.Open())
	}
	const n = 6
	for i := range n {
		if code := p.try("/v1/chat/completions", nil); code != 200 {
			t.Fatalf("request %d while a is full: status %d", i+1, code)
		}
	}
	stillOpen := ma.Open()
	wg.Wait()
	if long != 200 {
		t.Fatalf("long request: status %d", long)
	}
	if stillOpen != 1 {
		t.Skipf("the long request on a ended before the other requests did (%d open): the machine is too slow for this check", stillOpen)
	}
	if got := mb.Count(); got != n {
		t.Errorf("b served %d of the %d requests sent while a was full, want all", got, n)
	}
	if got := ma.Count(); got != 1 {
		t.Errorf("a got %d requests, want 1 (the long request)", got)
	}
	for _, r := range p.sink.all() {
		if strings.Contains(r.RespHeaders, "a=upstream_connect") {
			t.Errorf("a row blames a's upstream for its own full pool: %s", r.RespHeaders)
		}
	}
}
