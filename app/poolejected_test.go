package app

import (
	"strings"
	"testing"
)

// TestPoolEveryTargetEjectedOneAttempt: with every target of a route
// ejected (each answered 429 with a Retry-After of a minute), a request
// still gets one attempt, round-robin over the targets, and no failover to
// the other ejected ones: the providers that asked for a pause see one
// request per client request, not max_attempts. Before, every request went
// on to each ejected target in turn.
func TestPoolEveryTargetEjectedOneAttempt(t *testing.T) {
	a, hitsA := tooManyServer(t, 60)
	b, hitsB := tooManyServer(t, 60)
	c, hitsC := tooManyServer(t, 60)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    failover: {on: [connect, timeout, 429, 5xx], max_attempts: 3}
    upstreams:
      - {name: a, url: "`+a+`"}
      - {name: b, url: "`+b+`"}
      - {name: c, url: "`+c+`"}
`, "rate_limit: {disabled: true}"))
	hits := func() int64 { return hitsA.Load() + hitsB.Load() + hitsC.Load() }

	// The first request tries all three; each 429 ejects its target.
	if code := p.try("/v1/chat/completions", nil); code != 429 {
		t.Fatalf("first request: status %d, want the last target's 429", code)
	}
	if n := hits(); n != 3 {
		t.Fatalf("first request reached the targets %d times, want 3 (one attempt each)", n)
	}
	const more = 6
	for i := range more {
		if code := p.try("/v1/chat/completions", nil); code != 429 {
			t.Fatalf("request %d with every target ejected: status %d, want 429", i+2, code)
		}
	}
	if n := hits() - 3; n != more {
		t.Fatalf("%d requests with every target ejected reached the targets %d times, want %d (one attempt each)", more, n, more)
	}
	if hitsA.Load() < 2 || hitsB.Load() < 2 || hitsC.Load() < 2 {
		t.Errorf("attempts per target a=%d b=%d c=%d: want round-robin over the ejected targets", hitsA.Load(), hitsB.Load(), hitsC.Load())
	}
	// The attempts are listed in a row only when there were several: the
	// first request's row, and no other.
	listed := 0
	for _, r := range p.sink.all() {
		if strings.Contains(r.RespHeaders, `"x-relay-attempts":"`) {
			listed++
		}
	}
	if listed != 1 {
		t.Errorf("%d rows list several attempts, want 1 (the first request's)", listed)
	}
}
