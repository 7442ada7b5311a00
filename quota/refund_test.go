package quota

import (
	"context"
	"math"
	"strconv"
	"testing"
	"time"
)

// admitsNow takes from tenant until a refusal and returns how many
// requests were admitted (at most limit).
func admitsNow(l *Limiter, tenant string, limit int) int {
	n := 0
	for ; n < limit; n++ {
		if d := l.Take(context.Background(), tenant, ""); !d.Allowed {
			break
		}
	}
	return n
}

// TestRefundGivesTheTokenBack: a refunded admission's token goes back to
// the bucket it came from, in process and in Redis (no leases), and is
// admitted exactly once more; refunds never fill a bucket past its
// capacity. The rate is one request a minute: nothing refills during the
// test. In Redis mode the gives run in the background; Close waits for
// them, and a second relay (limiter) on the same buckets counts.
func TestRefundGivesTheTokenBack(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			o := Options{Default: 1, Burst: 2, Lease: 1}
			if m.redis {
				o.KeyPrefix = testPrefix(t)
			}
			l := newTestLimiter(t, m.redis, o)
			// settled returns a limiter that sees every refund so far.
			settled := func() *Limiter {
				if !m.redis {
					return l
				}
				l.Close()
				l = newTestLimiter(t, true, o)
				return l
			}
			ctx := context.Background()
			d1, d2 := l.Take(ctx, "acme", ""), l.Take(ctx, "acme", "")
			if !d1.Allowed || !d2.Allowed || l.Take(ctx, "acme", "").Allowed {
				t.Fatalf("decisions %+v %+v: want two admitted, the third refused", d1, d2)
			}
			wantSource(t, m.redis, d2)
			l.Refund("acme", "", d2)
			if n := admitsNow(settled(), "acme", 5); n != 1 {
				t.Fatalf("after one refund %d requests admitted, want 1", n)
			}

			// Three refunds into a bucket of two that is empty: full, not
			// over.
			for range 3 {
				l.Refund("acme", "", d1)
			}
			if n := admitsNow(settled(), "acme", 5); n != 2 {
				t.Fatalf("after three refunds into an empty bucket of 2, %d admitted, want 2", n)
			}

			// A refusal and a decision that took no token give nothing.
			l.Refund("acme", "", Decision{RetryAfter: time.Second, Source: d1.Source})
			l.Refund("acme", "", Decision{Allowed: true, Source: SourceBypass})
			if n := admitsNow(settled(), "acme", 5); n != 0 {
				t.Fatalf("%d admitted after refunds that gave nothing back, want 0", n)
			}
		})
	}
}

// TestRefundLease: with leases, a refunded leased admission goes back into
// its lease without a Redis command (the lease admits one more), a
// refunded Redis admission goes back to the Redis bucket in the
// background, and once the leases are given back (Close) the Redis bucket
// holds its capacity less the requests not refunded: nothing lost, nothing
// admitted twice.
func TestRefundLease(t *testing.T) {
	srv := startOwnRedis(t)
	l := warmLimiter(t, srv, Options{Default: 1, Burst: 100, Lease: 16, LeaseTTL: time.Hour, RenewBelow: -1})
	ctx := context.Background()
	d1 := l.Take(ctx, "acme", "")
	d2 := l.Take(ctx, "acme", "")
	if !d1.Allowed || d1.Source != SourceRedis || !d2.Allowed || d2.Source != SourceLease {
		t.Fatalf("decisions %+v %+v: want a lease's grant and a leased admission", d1, d2)
	}
	before := commandCalls(t, srv.addr)
	l.Refund("acme", "", d2)
	after := commandCalls(t, srv.addr)
	if after["evalsha"] != before["evalsha"] || after["eval"] != before["eval"] {
		t.Fatalf("a leased token's refund ran the script: %d evalsha, %d eval", after["evalsha"]-before["evalsha"], after["eval"]-before["eval"])
	}
	for i := range 15 { // 14 left after d2, and d2's
		if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceLease {
			t.Fatalf("leased admission %d after the refund: %+v", i, d)
		}
	}
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
		t.Fatalf("the lease used up: %+v, want the next script run", d)
	}
	l.Refund("acme", "", d1)
	l.Close()

	// 18 admitted, 2 refunded: 16 requests took a token.
	raw := rawClient(t, srv.addr)
	v, err := raw.Do(ctx, raw.B().Hget().Key("relay:rl:{acme}:req").Field("t").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	level, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(level-84) > 0.5 {
		t.Fatalf("the Redis bucket holds %v tokens after the leases were given back, want 84 (100 less 16 served)", level)
	}
}
