//go:build !race

package quota

import (
	"context"
	"testing"
	"time"
)

// TestRedisDecisionAllocs counts heap allocations per decision through the
// real Redis in steady state, process-wide (rueidis's reader goroutine
// included): an admitted decision allocates the script's reply array and
// rueidis's cache key of the cached HMGET, a refusal from the client-side
// cache only the latter.
func TestRedisDecisionAllocs(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name       string
		o          Options
		key        string
		wantSource Source
		max        float64
	}{
		{"admitted", Options{Default: 1 << 30, TokensPerMinute: MaxLimit, Lease: 1}, "", SourceRedis, 2},
		{"admitted with key limit", Options{Default: 1 << 30, Keys: map[string]int{"k1": 1 << 30}, Lease: 1}, "k1", SourceRedis, 2},
		{"refused from cache", Options{Default: 1, Burst: 1}, "", SourceCache, 1},
		// A lease of 1<<20 tokens outlasts the measurement: every decision
		// is served from it, with no Redis call.
		{"leased", Options{Default: 1 << 30, TokensPerMinute: MaxLimit, Lease: 1 << 20, LeaseTTL: time.Hour}, "", SourceLease, 0},
		{"leased with key limit", Options{Default: 1 << 30, Keys: map[string]int{"k1": 1 << 30}, Lease: 1 << 20, LeaseTTL: time.Hour}, "k1", SourceLease, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newTestLimiter(t, true, tt.o)
			// Builds the commands, loads the script, fills the cache; a
			// refusal needs a few decisions until the blocked-until key
			// is cached.
			var d Decision
			for i := 0; i < 20; i++ {
				d = l.Take(ctx, "acme", tt.key)
			}
			if d.Source != tt.wantSource {
				t.Fatalf("warm-up decision %+v, want from %v", d, tt.wantSource)
			}
			n := testing.AllocsPerRun(500, func() { d = l.Take(ctx, "acme", tt.key) })
			if d.Source != tt.wantSource {
				t.Fatalf("decision %+v, want from %v", d, tt.wantSource)
			}
			t.Logf("%v allocations per decision", n)
			if n > tt.max {
				t.Fatalf("Take through Redis allocates %v times per decision, want at most %v", n, tt.max)
			}
		})
	}
}

// TestDebitWithoutBudgetAllocs: a tenant without a token budget is charged
// nothing, and the charge costs no allocation and no Redis work: the relay
// charges every stream, an estimate where its usage did not come (most
// OpenAI streams without include_usage), and each one took a bounded
// context and a read of the override hash before.
func TestDebitWithoutBudgetAllocs(t *testing.T) {
	l := newTestLimiter(t, true, Options{Default: 1 << 30, Lease: 1})
	ctx := context.Background()
	if d := l.Take(ctx, "acme", ""); !d.Allowed {
		t.Fatalf("decision %+v", d)
	}
	if n := testing.AllocsPerRun(200, func() { l.Debit(ctx, "acme", 250) }); n != 0 {
		t.Errorf("Debit without a budget: %.1f allocations, want 0", n)
	}
}
