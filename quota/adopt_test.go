package quota

import (
	"context"
	"testing"
	"time"
)

// TestAdoptKeepsDrainedBuckets is QA's reload repro: a tenant spends its
// burst, Redis dies, requests are refused by the local fallback; a reload
// that changes only rate_limit.default builds a new limiter, which must go
// on refusing instead of granting a full burst again. Embedded mode (no
// Redis) carries its buckets over the same way.
func TestAdoptKeepsDrainedBuckets(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			// 6/min (burst 6), then 12/min (burst 12): a token every 5s
			// at most, none arrives during the test.
			o := Options{Default: 6, Keys: map[string]int{"k1": 6}, Timeout: time.Second, ProbeInterval: time.Hour}
			var srv *ownRedis
			if m.redis {
				srv = startOwnRedis(t)
				o.RedisAddr = srv.addr
			}
			l1, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer l1.Close()
			ctx := context.Background()
			start := time.Now()
			for i := 0; i < 6; i++ {
				l1.Take(ctx, "acme", "") // the tenant's bucket
				l1.Take(ctx, "beta", "k1")
			}
			if m.redis {
				srv.Kill()
			}
			for i := 0; i < 5; i++ {
				if d := l1.Take(ctx, "acme", ""); d.Allowed {
					t.Fatalf("request %d after the burst: %+v, want refused", i, d)
				}
			}

			o.Default = 12 // the reload's only change
			l2, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			l2.Adopt(l1)
			admitted, keyAdmitted := 0, 0
			var last Decision
			for i := 0; i < 30; i++ {
				if last = l2.Take(ctx, "acme", ""); last.Allowed {
					admitted++
				}
				if d := l2.Take(ctx, "beta", "k1"); d.Allowed {
					keyAdmitted++
				}
			}
			// Refill since the burst: 12/min for the tenant, 6/min for the key.
			secs := time.Since(start).Seconds()
			if limit := int(secs/5) + 1; admitted > limit || keyAdmitted > limit {
				t.Fatalf("after the reload %d and %d of 30 admitted in %.1fs (tenant, key), want at most %d: the buckets started full again",
					admitted, keyAdmitted, secs, limit)
			}
			if last.Source != SourceLocal || last.Limit != 12 {
				t.Fatalf("after the reload %+v: want a local refusal under the new limit (12)", last)
			}
		})
	}
}

// TestAdoptKeepsRedisOverrides: the overrides a limiter last read from
// Redis still apply to the limiter a reload builds during an outage, over
// the new file limits.
func TestAdoptKeepsRedisOverrides(t *testing.T) {
	srv := startOwnRedis(t)
	c := rawClient(t, srv.addr)
	o := Options{RedisAddr: srv.addr, Default: 600, Timeout: time.Second, ProbeInterval: time.Hour}
	redisDo(t, c, "HSET", "relay:rl:{acme}:cfg", "rpm", "6", "burst", "3")
	l1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l1.Close()
	ctx := context.Background()
	if d := l1.Take(ctx, "acme", ""); d.Limit != 3 || d.Source != SourceRedis {
		t.Fatalf("with the override %+v: want Limit 3 from Redis", d)
	}
	srv.Kill()
	o.Default = 1200
	l2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	l2.Adopt(l1)
	for i := 0; i < 2; i++ {
		if d := l2.Take(ctx, "acme", ""); !d.Allowed || d.Limit != 3 || d.Source != SourceLocal {
			t.Fatalf("request %d after the reload %+v: want admitted locally with the override's Limit 3", i, d)
		}
	}
	if d := l2.Take(ctx, "acme", ""); d.Allowed {
		t.Fatalf("past the override's burst %+v: want refused", d)
	}
	if d := l2.Take(ctx, "other", ""); !d.Allowed || d.Limit != 1200 {
		t.Fatalf("a tenant without override %+v: want the new file limit 1200", d)
	}
}

// TestAdoptNil: a reload after rate limits were disabled has no previous
// limiter.
func TestAdoptNil(t *testing.T) {
	l, err := New(Options{Default: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Adopt(nil)
	l.Adopt(l)
	if d := l.Take(context.Background(), "acme", ""); !d.Allowed {
		t.Fatalf("%+v: want a full bucket", d)
	}
}

// TestAdoptCountsOneOutageOnce: a reload during a Redis outage hands the
// outage to the new limiter: across both, the switches to the fallback and
// back come out even once Redis returns. The retired limiter, closed
// before Redis returned, never counted its switch back:
// relay_ratelimit_switches_total stayed unbalanced for good, and a
// dashboard comparing them showed the relay in fallback.
func TestAdoptCountsOneOutageOnce(t *testing.T) {
	srv := startOwnRedis(t)
	o := Options{RedisAddr: srv.addr, Default: 600, Lease: 1, Timeout: 200 * time.Millisecond, ProbeInterval: 50 * time.Millisecond}
	l1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l1.Take(ctx, "acme", "")
	srv.Kill()
	if d := l1.Take(ctx, "acme", ""); d.Source != SourceLocal {
		t.Fatalf("with Redis killed: %+v", d)
	}
	l2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	l2.Adopt(l1)
	l1.Close() // retired before Redis returns
	srv.Start()
	deadline := time.Now().Add(30 * time.Second)
	for l2.Take(ctx, "acme", "").Source != SourceRedis && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	s1, s2 := l1.Stats(), l2.Stats()
	if fb, back := s1.ToFallback+s2.ToFallback, s1.ToRedis+s2.ToRedis; fb != back || s2.ToRedis != 1 {
		t.Fatalf("switches over both limiters: %d to the fallback, %d back; want as many back (l1 %+v, l2 %+v)", fb, back, s1, s2)
	}
}

// TestAdoptOutageAfterReload: an outage that the retired limiter finds
// after the reload (a request or a stream's debit still through it),
// closed before Redis returns, comes out even too.
func TestAdoptOutageAfterReload(t *testing.T) {
	srv := startOwnRedis(t)
	o := Options{RedisAddr: srv.addr, Default: 600, Lease: 1, Timeout: 200 * time.Millisecond, ProbeInterval: 50 * time.Millisecond}
	l1, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	l2.Adopt(l1)
	ctx := context.Background()
	srv.Kill()
	l1.Take(ctx, "acme", "")
	l2.Take(ctx, "acme", "")
	l1.Close()
	srv.Start()
	deadline := time.Now().Add(30 * time.Second)
	for l2.Take(ctx, "acme", "").Source != SourceRedis && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	s1, s2 := l1.Stats(), l2.Stats()
	if fb, back := s1.ToFallback+s2.ToFallback, s1.ToRedis+s2.ToRedis; fb != back || fb == 0 {
		t.Fatalf("switches over both limiters: %d to the fallback, %d back (l1 %+v, l2 %+v)", fb, back, s1, s2)
	}
}
