package quota

import (
	"context"
	"testing"
	"time"
)

// TestBudgetRefusalReset: a tenant whose token budget is spent is refused
// until it is positive again (Retry-After), and X-RateLimit-Reset says when
// the request bucket the refusal reports is full: by then, as the bucket
// holds nearly all its tokens. Through Redis the refusals came from the
// blocked-until key, read as if the request bucket had been empty: a Reset
// a whole bucket's refill later (119 s here, not 60), and none of the
// relay key's limit for a tenant without a request limit of its own.
func TestBudgetRefusalReset(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			l := newTestLimiter(t, m.redis, Options{Default: 60, TokensPerMinute: 100,
				Tenants: map[string]int{"open": Unlimited}, Keys: map[string]int{"k1": 600}})
			ctx := context.Background()
			check := func(tenant, key string, limit int) {
				t.Helper()
				for i := 0; i < 3; i++ { // from Redis, then from the cache
					d := l.Take(ctx, tenant, key)
					if d.Allowed || d.Limit != limit || d.RetryAfter < 55*time.Second || d.RetryAfter > 61*time.Second {
						t.Fatalf("%s %d: %+v, want refused for about 60 s, Limit %d", tenant, i, d, limit)
					}
					if d.Reset < d.RetryAfter || d.Reset > d.RetryAfter+2*time.Second {
						t.Fatalf("%s %d: Reset %v, RetryAfter %v: the request bucket is full before the budget is positive", tenant, i, d.Reset, d.RetryAfter)
					}
				}
			}
			for i := 0; i < 3; i++ {
				if d := l.Take(ctx, "acme", ""); !d.Allowed {
					t.Fatalf("request %d refused: %+v", i, d)
				}
			}
			l.Debit(ctx, "acme", 200) // 100 in debt: 60 s at 100 a minute
			check("acme", "", 60)
			if d := l.Take(ctx, "open", "k1"); !d.Allowed || d.Limit != 600 {
				t.Fatalf("open with k1: %+v", d)
			}
			l.Debit(ctx, "open", 200)
			check("open", "k1", 600)
		})
	}
}
