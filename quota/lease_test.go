package quota

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLeaseAdmitsWithOneScriptRun: with Lease 16 and a bucket far from its
// limit, one script run admits 16 requests: the first from Redis, the next
// 15 from the lease, counted by the server's own commandstats. Renewals
// are off here (renew_test.go has them).
func TestLeaseAdmitsWithOneScriptRun(t *testing.T) {
	srv := startOwnRedis(t)
	l := warmLimiter(t, srv, Options{Default: 6000, Burst: 1000, Lease: 16, LeaseTTL: time.Hour, RenewBelow: -1})
	ctx := context.Background()
	before := commandCalls(t, srv.addr)
	first := l.Take(ctx, "acme", "")
	if !first.Allowed || first.Source != SourceRedis || first.Remaining != 999 {
		t.Fatalf("first decision %+v: want admitted by Redis with 999 left", first)
	}
	for i := 1; i < 16; i++ {
		d := l.Take(ctx, "acme", "")
		if !d.Allowed || d.Source != SourceLease || d.Limit != 1000 || d.Remaining != 999-i {
			t.Fatalf("decision %d: %+v, want admitted from the lease with %d left", i, d, 999-i)
		}
	}
	mid := commandCalls(t, srv.addr)
	if got := mid["evalsha"] - before["evalsha"]; got != 1 {
		t.Fatalf("16 decisions ran the script %d times, want 1", got)
	}
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
		t.Fatalf("17th decision %+v: want the next script run", d)
	}
	after := commandCalls(t, srv.addr)
	if got := after["evalsha"] - before["evalsha"]; got != 2 {
		t.Fatalf("17 decisions ran the script %d times, want 2", got)
	}
	if st := l.Stats(); st.Leases != 3 || st.Admitted[SourceLease] != 15 { // warm-up, acme, acme
		t.Fatalf("stats %+v: want 3 leases and 15 leased admissions", st)
	}
}

// warmLimiter returns a limiter with options o on srv (a 2 s timeout, no
// probe), closed when the test ends, after one decision of another tenant
// loaded the script: the server's command counts of the test start there.
func warmLimiter(t *testing.T, srv *ownRedis, o Options) *Limiter {
	t.Helper()
	o.RedisAddr, o.Timeout, o.ProbeInterval = srv.addr, 2*time.Second, time.Hour
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close) // Close is idempotent: a test may close first
	if d := l.Take(context.Background(), "warm-up", ""); !d.Allowed {
		t.Fatalf("warm-up %+v", d)
	}
	return l
}

// relays returns n limiters (n relays) with options o that share one key
// prefix, and so one set of buckets per tenant.
func relays(t *testing.T, n int, o Options) []*Limiter {
	o.KeyPrefix = testPrefix(t)
	ls := make([]*Limiter, n)
	for i := range ls {
		ls[i] = newTestLimiter(t, true, o)
	}
	return ls
}

// inWorkers runs work on k goroutines per limiter, all at once, and waits
// for them.
func inWorkers(ls []*Limiter, k int, work func(l *Limiter)) {
	var wg sync.WaitGroup
	for _, l := range ls {
		for range k {
			wg.Add(1)
			go func() {
				defer wg.Done()
				work(l)
			}()
		}
	}
	wg.Wait()
}

// TestLeasesKeepSharedCountsExact: three limiters (three relays) with leases
// share a bucket of 60 that does not refill while the test runs; 204
// concurrent attempts are admitted exactly 60 times. Leases come only from
// the bucket's upper half: at least 30 admissions were decided by Redis one
// by one.
func TestLeasesKeepSharedCountsExact(t *testing.T) {
	const burst = 60
	ls := relays(t, 3, Options{Default: 1, Burst: burst, Lease: 16, RenewBelow: -1})
	var admitted, fromLease, fromRedis atomic.Int64
	inWorkers(ls, 2, func(l *Limiter) {
		for i := 0; i < 34; i++ {
			d := l.Take(context.Background(), "acme", "")
			if !d.Allowed {
				continue
			}
			admitted.Add(1)
			switch d.Source {
			case SourceLease:
				fromLease.Add(1)
			case SourceRedis:
				fromRedis.Add(1)
			default:
				t.Errorf("admitted by %v: %+v", d.Source, d)
			}
		}
	})
	t.Logf("admitted %d: %d from Redis, %d from leases", admitted.Load(), fromRedis.Load(), fromLease.Load())
	if admitted.Load() != burst {
		t.Fatalf("admitted %d of 204, want exactly %d", admitted.Load(), burst)
	}
	if fromLease.Load() == 0 || fromRedis.Load() < burst/2 {
		t.Fatalf("%d from leases, %d from Redis: want some leased and at least %d decided by Redis", fromLease.Load(), fromRedis.Load(), burst/2)
	}
}

// TestLeaseNotNearLimit: a bucket that would be less than half full after a
// lease grants none: with 10 tokens and Lease 16 one lease of 5 is granted,
// then every decision goes to Redis, and Remaining counts down exactly.
func TestLeaseNotNearLimit(t *testing.T) {
	l := newTestLimiter(t, true, Options{Default: 1, Burst: 10, Lease: 16})
	ctx := context.Background()
	want := []Source{SourceRedis, SourceLease, SourceLease, SourceLease, SourceLease,
		SourceRedis, SourceRedis, SourceRedis, SourceRedis, SourceRedis}
	for i, src := range want {
		d := l.Take(ctx, "acme", "")
		if !d.Allowed || d.Source != src || d.Remaining != 9-i {
			t.Fatalf("decision %d: %+v, want admitted from %v with %d left", i, d, src, 9-i)
		}
	}
	if d := l.Take(ctx, "acme", ""); d.Allowed {
		t.Fatalf("11th decision %+v: want refused", d)
	}
	if st := l.Stats(); st.Leases != 1 {
		t.Fatalf("stats %+v: want exactly one lease", st)
	}
}

// TestLeaseReturnedAfterExpiry: a relay that takes a lease and goes idle
// gives its unused tokens back once the lease expires, so another relay
// can admit them, even one that had been refused meanwhile and caches the
// refusal: the give-back deletes the blocked-until key.
func TestLeaseReturnedAfterExpiry(t *testing.T) {
	prefix := testPrefix(t)
	// 1/min: no refill while the test runs, and a refusal's blocked-until
	// key lives up to a minute.
	idle := newTestLimiter(t, true, Options{Default: 1, Burst: 60, Lease: 16, LeaseTTL: time.Second, KeyPrefix: prefix})
	other := newTestLimiter(t, true, Options{Default: 1, Burst: 60, Lease: 1, KeyPrefix: prefix})
	ctx := context.Background()
	if d := idle.Take(ctx, "acme", ""); !d.Allowed || idle.Stats().Leases != 1 {
		t.Fatalf("first decision %+v, stats %+v: want a lease", d, idle.Stats())
	}
	// The other relay drains what the lease left in the bucket (44) and
	// is refused; if the lease expired meanwhile it gets all 59 here.
	before := 0
	for i := 0; i < 100; i++ {
		if !other.Take(ctx, "acme", "").Allowed {
			break
		}
		before++
	}
	deadline := time.Now().Add(10 * time.Second)
	for idle.Stats().LeaseTokensReturned != 15 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the 15 unused tokens were not given back", idle.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := 0
	for i := 0; i < 100; i++ {
		if other.Take(ctx, "acme", "").Allowed {
			after++
		}
	}
	t.Logf("the other relay admitted %d before the give-back and %d after", before, after)
	if before+after != 59 {
		t.Fatalf("the other relay admitted %d+%d, want the 59 left after the idle relay's one request", before, after)
	}
}

// TestLeaseDroppedOnOverride: an operator's HSET of new limits ends the
// leases of every relay at once (LeaseTTL is an hour here, so expiry cannot
// explain it): the next decisions apply the new limits.
func TestLeaseDroppedOnOverride(t *testing.T) {
	prefix := testPrefix(t)
	_, c := sharedRedis(t, prefix)
	var ls []*Limiter
	for i := 0; i < 2; i++ {
		ls = append(ls, newTestLimiter(t, true, Options{Default: 6000, Burst: 1000, Lease: 16, LeaseTTL: time.Hour, KeyPrefix: prefix}))
	}
	ctx := context.Background()
	for i, l := range ls {
		if d := l.Take(ctx, "acme", ""); !d.Allowed || l.Take(ctx, "acme", "").Source != SourceLease {
			t.Fatalf("limiter %d holds no lease: %+v", i, d)
		}
	}
	cfg := prefix + "{acme}:cfg"
	if err := c.Do(ctx, c.B().Hset().Key(cfg).FieldValue().FieldValue("rpm", "60").FieldValue("burst", "3").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	for i, l := range ls {
		deadline := time.Now().Add(5 * time.Second)
		leased := 0
		for {
			d := l.Take(ctx, "acme", "")
			if d.Source != SourceLease {
				if d.Limit != 3 {
					t.Fatalf("limiter %d after the override: %+v, want Limit 3", i, d)
				}
				break
			}
			if leased++; time.Now().After(deadline) || leased >= 14 {
				t.Fatalf("limiter %d still admits from its lease %d times after the override", i, leased)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("limiter %d: %d leased decisions after the HSET", i, leased)
	}
}

// TestLeaseDroppedWhenBudgetExhausted: a token budget exhausted by a Debit
// ends the tenant's leases, on the relay that debited at once and on the
// others through the invalidation of the blocked-until key.
func TestLeaseDroppedWhenBudgetExhausted(t *testing.T) {
	prefix := testPrefix(t)
	o := Options{Default: 6000, Burst: 1000, TokensPerMinute: 100, Lease: 16, LeaseTTL: time.Hour, KeyPrefix: prefix}
	a := newTestLimiter(t, true, o)
	b := newTestLimiter(t, true, o)
	ctx := context.Background()
	for _, l := range []*Limiter{a, b} {
		if d := l.Take(ctx, "acme", ""); !d.Allowed || l.Take(ctx, "acme", "").Source != SourceLease {
			t.Fatalf("no lease: %+v", d)
		}
	}
	a.Debit(ctx, "acme", 1000)
	if d := a.Take(ctx, "acme", ""); d.Allowed {
		t.Fatalf("debiting relay after the budget ran out: %+v, want refused", d)
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		d := b.Take(ctx, "acme", "")
		if !d.Allowed {
			break
		}
		if d.Source != SourceLease || time.Now().After(deadline) {
			t.Fatalf("other relay, decision %d after the budget ran out: %+v", i, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLeaseWithKeyLimit: a relay key with its own limit gets its own lease,
// taken from both its bucket and the tenant's, and the tenant's requests
// without that key do not use it. (Renewals are off: with them the key's
// lease may be renewed before the last check; renew_test.go has that.)
func TestLeaseWithKeyLimit(t *testing.T) {
	l := newTestLimiter(t, true, Options{Default: 1, Burst: 100, Keys: map[string]int{"k1": 1}, Lease: 8, RenewBelow: -1})
	ctx := context.Background()
	for i := 0; i < 8; i++ {
		d := l.Take(ctx, "acme", "k1")
		want := SourceLease
		if i == 0 {
			want = SourceRedis
		}
		if !d.Allowed || d.Source != want {
			t.Fatalf("keyed decision %d: %+v, want from %v", i, d, want)
		}
	}
	// The key's lease was taken from the tenant's bucket too; requests
	// without the key take their own lease from what is left.
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis || d.Remaining != 100-8-1 {
		t.Fatalf("decision without the key: %+v, want from Redis with %d left", d, 100-8-1)
	}
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceLease {
		t.Fatalf("second decision without the key: %+v, want from its lease", d)
	}
}

// TestLeaseGrowsForBusyTenant: a lease used up within an eighth of its
// LeaseTTL doubles for the next script run, up to LeaseMax: with Lease 16
// and LeaseMax 64, 176 decisions take four script runs (16 + 32 + 64 + 64
// tokens) instead of eleven, counted by the server's commandstats, and
// Remaining still counts down by one per request. Renewals are off, so
// every lease is taken by a request's own script run.
func TestLeaseGrowsForBusyTenant(t *testing.T) {
	srv := startOwnRedis(t)
	const burst = 100000
	l := warmLimiter(t, srv, Options{Default: 1, Burst: burst, Lease: 16, LeaseMax: 64, LeaseTTL: time.Hour, RenewBelow: -1})
	ctx := context.Background()
	before := commandCalls(t, srv.addr)
	fromRedis := map[int]bool{0: true, 16: true, 48: true, 112: true}
	for i := 0; i < 176; i++ {
		want := SourceLease
		if fromRedis[i] {
			want = SourceRedis
		}
		if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != want || d.Remaining != burst-1-i {
			t.Fatalf("decision %d: %+v, want admitted from %v with %d left", i, d, want, burst-1-i)
		}
	}
	after := commandCalls(t, srv.addr)
	if got := after["evalsha"] - before["evalsha"]; got != 4 {
		t.Fatalf("176 decisions ran the script %d times, want 4", got)
	}
	l.Close()
	level := bucketTokens(t, srv.addr, l.tenant("acme").reqKey)
	if level < burst-176 || level > burst-176+0.5 {
		t.Fatalf("bucket holds %.3f tokens after 176 admissions and Close, want %d", level, burst-176)
	}
}

// TestLeaseShrinksWhenUnused: a grown lease that expires with more than
// half its tokens unused halves for the next grant, down to Lease: after
// the tenant slows down, an instance no longer holds LeaseMax tokens it
// does not use.
func TestLeaseShrinksWhenUnused(t *testing.T) {
	l := newTestLimiter(t, true, Options{Default: 1, Burst: 100000, Lease: 16, LeaseMax: 64, LeaseTTL: time.Hour, RenewBelow: -1})
	ctx := context.Background()
	for i := 0; i < 48; i++ { // leases of 16 and 32, both used up: the next asks for 64
		l.Take(ctx, "acme", "")
	}
	ts := l.tenant("acme")
	leaseLeft := func() int64 {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		return ts.lease.left
	}
	for i, want := range []int64{63, 31, 15, 15} {
		if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
			t.Fatalf("grant %d: %+v, want from Redis", i, d)
		}
		if got := leaseLeft(); got != want {
			t.Fatalf("grant %d left %d tokens in the lease, want %d", i, got, want)
		}
		l.expireLeases(allLeases) // as LeaseTTL passing would: the tokens go back
	}
}
