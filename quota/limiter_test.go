package quota

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Semantics tests run twice: with the buckets in process (embedded mode) and
// in the suite's Redis. Both must give the same answers.
var modes = []struct {
	name  string
	redis bool
}{{"local", false}, {"redis", true}}

// newTestLimiter builds a Limiter for the mode. In Redis mode it uses a key
// prefix of its own, a generous timeout (the machine is shared, a fallback
// would make counts wrong) and fails the test if it ever fell back.
func newTestLimiter(t *testing.T, redis bool, o Options) *Limiter {
	t.Helper()
	if redis {
		if o.KeyPrefix == "" {
			o.KeyPrefix = testPrefix(t)
		}
		o.RedisAddr, _ = sharedRedis(t, o.KeyPrefix)
		if o.Timeout == 0 {
			o.Timeout = 2 * time.Second
		}
	}
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if st := l.Stats(); redis && st.ToFallback != 0 {
			t.Errorf("limiter fell back to %s during the test: %+v", o.OnRedisError, st)
		}
		l.Close()
	})
	return l
}

// wantSource checks that a decision came from the mode's own store.
func wantSource(t *testing.T, redis bool, d Decision) {
	t.Helper()
	switch {
	case !redis && d.Source != SourceLocal,
		redis && d.Source != SourceRedis && d.Source != SourceCache && d.Source != SourceLease:
		t.Fatalf("decision %+v: source %v in mode redis=%v", d, d.Source, redis)
	}
}

func TestBurstAdmitsExactlyCapacity(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			// 60/min is one token a second: the 25 requests finish long
			// before a second token arrives.
			l := newTestLimiter(t, m.redis, Options{Default: 60, Burst: 10})
			ctx := context.Background()
			admitted := 0
			for i := 0; i < 25; i++ {
				d := l.Take(ctx, "acme", "")
				wantSource(t, m.redis, d)
				if d.Limit != 10 {
					t.Fatalf("request %d: Limit %d, want 10", i, d.Limit)
				}
				if d.Allowed {
					if want := 9 - admitted; d.Remaining != want {
						t.Fatalf("request %d: Remaining %d, want %d", i, d.Remaining, want)
					}
					if d.RetryAfter != 0 || d.Reset <= 0 || d.Reset > 10*time.Second {
						t.Fatalf("admitted %+v: want RetryAfter 0, Reset in (0, 10s]", d)
					}
					admitted++
					continue
				}
				if d.Remaining != 0 || d.RetryAfter <= 0 || d.RetryAfter > time.Second ||
					d.Reset < d.RetryAfter || d.Reset > 10*time.Second {
					t.Fatalf("refused %+v: want Remaining 0, RetryAfter in (0, 1s], Reset in [RetryAfter, 10s]", d)
				}
			}
			if admitted != 10 {
				t.Fatalf("admitted %d of 25, want 10", admitted)
			}
			if other := l.Take(ctx, "globex", ""); !other.Allowed || other.Remaining != 9 {
				t.Fatalf("other tenant %+v: want admitted with 9 left", other)
			}
		})
	}
}

func TestRefillOverTime(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			// 600/min: one token every 100ms.
			l := newTestLimiter(t, m.redis, Options{Default: 600, Burst: 5})
			ctx := context.Background()
			for i := 0; i < 5; i++ {
				if d := l.Take(ctx, "acme", ""); !d.Allowed {
					t.Fatalf("request %d of the burst refused: %+v", i, d)
				}
			}
			d := l.Take(ctx, "acme", "")
			if d.Allowed || d.RetryAfter <= 0 || d.RetryAfter > 100*time.Millisecond {
				t.Fatalf("after the burst %+v: want refused with RetryAfter in (0, 100ms]", d)
			}
			time.Sleep(350 * time.Millisecond) // three tokens, and a half
			admitted := 0
			for i := 0; i < 10; i++ {
				if l.Take(ctx, "acme", "").Allowed {
					admitted++
				}
			}
			if admitted < 2 || admitted > 5 {
				t.Fatalf("after 350ms admitted %d, want about 3 (2..5)", admitted)
			}
		})
	}
}

func TestKeyLimitNarrowsTenant(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			l := newTestLimiter(t, m.redis, Options{Default: 600, Keys: map[string]int{"k1": 3}})
			ctx := context.Background()
			admitted := 0
			for i := 0; i < 6; i++ {
				d := l.Take(ctx, "acme", "k1")
				wantSource(t, m.redis, d)
				if d.Limit != 3 {
					t.Fatalf("request %d with k1: Limit %d, want the key's 3", i, d.Limit)
				}
				if d.Allowed {
					admitted++
				} else if d.RetryAfter <= 0 || d.RetryAfter > 20*time.Second {
					t.Fatalf("refused %+v: RetryAfter want (0, 20s]", d)
				}
			}
			if admitted != 3 {
				t.Fatalf("k1 admitted %d of 6, want 3", admitted)
			}
			// Refused k1 requests took nothing from the tenant: 597 left.
			for i, key := range []string{"k2", ""} {
				d := l.Take(ctx, "acme", key)
				if want := 596 - i; !d.Allowed || d.Limit != 600 || d.Remaining != want {
					t.Fatalf("key %q %+v: want admitted by the tenant bucket, %d of 600 left", key, d, want)
				}
			}
		})
	}
}

func TestTokenBudgetRefusesAfterDebit(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			l := newTestLimiter(t, m.redis, Options{
				Default:         600,
				TokensPerMinute: 1000,
				TenantTokens:    map[string]int64{"free": 0},
			})
			ctx := context.Background()
			if d := l.Take(ctx, "acme", ""); !d.Allowed {
				t.Fatalf("fresh tenant refused: %+v", d)
			}
			l.Debit(ctx, "acme", 900)
			if d := l.Take(ctx, "acme", ""); !d.Allowed {
				t.Fatalf("refused with 100 tokens left: %+v", d)
			}
			// 500 in debt: 30s at 1000/min. Streams end with their context
			// cancelled; the debit must still count.
			done, cancel := context.WithCancel(ctx)
			cancel()
			l.Debit(done, "acme", 600)
			d := l.Take(ctx, "acme", "")
			if d.Allowed || d.RetryAfter < 29*time.Second || d.RetryAfter > 31*time.Second {
				t.Fatalf("in debt %+v: want refused with RetryAfter about 30s", d)
			}
			if d.Reset < d.RetryAfter {
				t.Fatalf("Reset %v before RetryAfter %v", d.Reset, d.RetryAfter)
			}
			l.Debit(ctx, "free", 1e9)
			if d := l.Take(ctx, "free", ""); !d.Allowed {
				t.Fatalf("tenant without a budget refused after Debit: %+v", d)
			}
		})
	}
}

func TestUnlimitedBypasses(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			l := newTestLimiter(t, m.redis, Options{Default: 1, Tenants: map[string]int{"vip": Unlimited}})
			ctx := context.Background()
			for i := 0; i < 20; i++ {
				if d := l.Take(ctx, "vip", ""); !d.Allowed || d.Source != SourceBypass || d.Limit != 0 {
					t.Fatalf("unlimited tenant %+v: want admitted, bypass, Limit 0", d)
				}
			}
			if !l.Take(ctx, "acme", "").Allowed || l.Take(ctx, "acme", "").Allowed {
				t.Fatal("Default 1: want the first request admitted and the second refused")
			}
		})
	}
}

func TestInstancesShareOneBudget(t *testing.T) {
	prefix := testPrefix(t)
	o := Options{Default: 60, Burst: 20, KeyPrefix: prefix}
	a := newTestLimiter(t, true, o)
	b := newTestLimiter(t, true, o)
	var mu sync.Mutex
	admitted := 0
	var wg sync.WaitGroup
	for _, l := range []*Limiter{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 30; i++ {
				if l.Take(context.Background(), "acme", "").Allowed {
					mu.Lock()
					admitted++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	// One token a second refills while the 60 requests run.
	if admitted < 20 || admitted > 21 {
		t.Fatalf("two instances admitted %d together, want the one bucket's 20 (21 with a refill)", admitted)
	}
}

func TestCacheRefusesWithoutRoundTrips(t *testing.T) {
	srv := startOwnRedis(t) // commandstats of its own, no other test's commands
	l, err := New(Options{RedisAddr: srv.addr, Default: 60, Burst: 3, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
			t.Fatalf("burst request %d: %+v", i, d)
		}
	}
	first := l.Take(ctx, "acme", "") // the script refuses and writes blocked-until
	if first.Allowed || first.Source != SourceRedis {
		t.Fatalf("first refusal %+v: want refused by the script", first)
	}
	// The next refusals refetch the invalidated blocked-until key; the
	// invalidation may reach the connection that serves cached reads a
	// moment after the script's reply on another, so allow a few.
	for i := 0; ; i++ {
		if d := l.Take(ctx, "acme", ""); d.Source == SourceCache {
			break
		} else if d.Allowed || i == 10 {
			t.Fatalf("refusal %d not cached: %+v", i, d)
		}
	}

	before := commandCalls(t, srv.addr)
	const n = 200
	for i := 0; i < n; i++ {
		d := l.Take(ctx, "acme", "")
		if d.Allowed || d.Source != SourceCache {
			t.Fatalf("cached refusal %d: %+v", i, d)
		}
		if d.RetryAfter <= 0 || d.RetryAfter > time.Second || d.Limit != 3 || d.Reset < d.RetryAfter {
			t.Fatalf("cached refusal %d: headers %+v", i, d)
		}
	}
	after := commandCalls(t, srv.addr)
	for _, cmd := range []string{"evalsha", "eval", "get", "hmget", "multi", "client|caching"} {
		if got := after[cmd] - before[cmd]; got != 0 {
			t.Errorf("%d cached refusals sent %d %s to Redis, want 0", n, got, cmd)
		}
	}

	// The cached refusal ends when the next token is due, not later.
	time.Sleep(first.RetryAfter + 20*time.Millisecond)
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
		t.Fatalf("after RetryAfter %v: %+v, want admitted by Redis", first.RetryAfter, d)
	}
}

func TestHSETOverrideWithoutRestart(t *testing.T) {
	l := newTestLimiter(t, true, Options{Default: 60, Burst: 2, CacheTTL: 5 * time.Second})
	c := rawClient(t, l.o.RedisAddr)
	ctx := context.Background()
	if d := l.Take(ctx, "acme", ""); d.Limit != 2 {
		t.Fatalf("before the override %+v: want Limit 2", d)
	}
	cfg := l.o.KeyPrefix + "{acme}:cfg"
	if err := c.Do(ctx, c.B().Hset().Key(cfg).FieldValue().FieldValue("rpm", "6000").FieldValue("burst", "50").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// Tracking invalidates the cached hash at once; CacheTTL bounds it.
	deadline := time.Now().Add(l.o.CacheTTL + time.Second)
	var d Decision
	for time.Now().Before(deadline) {
		if d = l.Take(ctx, "acme", ""); d.Limit == 50 && d.Allowed {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d.Limit != 50 || !d.Allowed {
		t.Fatalf("after HSET burst 50: %+v", d)
	}
	if err := c.Do(ctx, c.B().Hset().Key(cfg).FieldValue().FieldValue("rpm", "-1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(l.o.CacheTTL + time.Second)
	for time.Now().Before(deadline) {
		if d = l.Take(ctx, "acme", ""); d.Source == SourceBypass {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if d.Source != SourceBypass || !d.Allowed {
		t.Fatalf("after HSET rpm -1: %+v, want unlimited", d)
	}
}

// TestCachedRefusalLongWait: a refusal from the client-side cache says how
// long the block really lasts, also when that is longer than the cache's
// TTL: rueidis caps a cached key's PTTL at the TTL, and a tenant blocked for
// a minute was told Retry-After 30 (the default TTL; 2 s here) again and
// again, retrying early each time. Also for a relay key's own block.
func TestCachedRefusalLongWait(t *testing.T) {
	l := newTestLimiter(t, true, Options{
		Default: 1, Burst: 1, Keys: map[string]int{"k1": 1},
		CacheTTL: 2 * time.Second,
	})
	ctx := context.Background()
	for _, c := range []struct{ tenant, key string }{{"acme", ""}, {"beta", "k1"}} {
		if d := l.Take(ctx, c.tenant, c.key); !d.Allowed {
			t.Fatalf("%s/%q: first request %+v", c.tenant, c.key, d)
		}
		first := l.Take(ctx, c.tenant, c.key)
		if first.Allowed || first.RetryAfter < 50*time.Second {
			t.Fatalf("%s/%q: refusal by the script %+v, want about a minute's wait", c.tenant, c.key, first)
		}
		cached := 0
		for i := 0; i < 50 && cached < 5; i++ {
			d := l.Take(ctx, c.tenant, c.key)
			if d.Allowed {
				t.Fatalf("%s/%q: refusal %d admitted: %+v", c.tenant, c.key, i, d)
			}
			if d.Source == SourceCache {
				cached++
			}
			// The wait only shrinks with the time the test took (well
			// under 10 s), never to the cache's TTL.
			if d.RetryAfter < 40*time.Second || d.RetryAfter > first.RetryAfter || d.Reset < d.RetryAfter {
				t.Fatalf("%s/%q: refusal %d (%v) says RetryAfter %v Reset %v, want close to %v",
					c.tenant, c.key, i, d.Source, d.RetryAfter, d.Reset, first.RetryAfter)
			}
		}
		if cached == 0 {
			t.Errorf("%s/%q: no refusal came from the cache", c.tenant, c.key)
		}
		// Later, the cached entry's own wait has counted down from the
		// TTL below a second; the block has most of its minute left.
		time.Sleep(1200 * time.Millisecond)
		if d := l.Take(ctx, c.tenant, c.key); d.Allowed || d.RetryAfter < 40*time.Second {
			t.Errorf("%s/%q: 1.2 s later: %+v (%v), want the block's whole wait", c.tenant, c.key, d, d.Source)
		}
	}
}

// TestLiftedBlockForgetsItsDeadline: a long block whose end was asked
// (its PTTL), lifted by the operator (a higher rpm, the block key
// deleted), leaves no old deadline behind: a later, short refusal says its
// own short wait, also from requests that share a cache fetch (rueidis
// marks them hits). About 4 % of such refusals said the old block's ~60 s.
func TestLiftedBlockForgetsItsDeadline(t *testing.T) {
	l := newTestLimiter(t, true, Options{Default: 1, Burst: 1, CacheTTL: 2 * time.Second})
	c := rawClient(t, l.o.RedisAddr)
	ctx := context.Background()
	l.Take(ctx, "acme", "")
	for range 3 {
		if d := l.Take(ctx, "acme", ""); d.Allowed || d.RetryAfter < 40*time.Second {
			t.Fatalf("the tenant's first block: %+v", d)
		}
	}
	cfg, blk := l.o.KeyPrefix+"{acme}:cfg", l.tenant("acme").blkKey
	if err := c.Do(ctx, c.B().Hset().Key(cfg).FieldValue().FieldValue("rpm", "60").FieldValue("burst", "1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, c.B().Del().Key(blk).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	// The cached key goes with the server's invalidation, a moment later:
	// until then a read still finds the lifted block, as any client would.
	deadline := time.Now().Add(10 * time.Second)
	for d := l.Take(ctx, "acme", ""); !d.Allowed && d.RetryAfter > 5*time.Second && time.Now().Before(deadline); d = l.Take(ctx, "acme", "") {
		time.Sleep(10 * time.Millisecond)
	}
	var long, refused atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				if d := l.Take(ctx, "acme", ""); !d.Allowed {
					refused.Add(1)
					if d.RetryAfter > 5*time.Second {
						long.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if refused.Load() == 0 || long.Load() != 0 {
		t.Fatalf("%d of %d refusals at rpm 60 said more than 5 s", long.Load(), refused.Load())
	}
}
