package quota

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// waitRenewals waits until l has taken want renewals (the renewer runs in
// the background), for at most 20 s.
func waitRenewals(t *testing.T, l *Limiter, want uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for l.Stats().LeaseRenewals < want {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want %d renewals within 20s", l.Stats(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRenewalKeepsTenantOffRedis: with Lease 16 and RenewBelow 4, the 12th
// decision of a fresh lease (4 tokens left) renews it in the background.
// Once the renewal is in, the next 20 decisions all come from leases: 36
// admissions for 2 script runs, none of them waiting for Redis after the
// first, and Remaining counts down exactly as if every request had taken
// its token from the bucket. Close gives the unused tokens back, and the
// bucket in Redis then holds exactly burst - 36.
func TestRenewalKeepsTenantOffRedis(t *testing.T) {
	srv := startOwnRedis(t)
	const burst = 1000
	// 1 request per minute: no refill worth a token while the test runs.
	l := warmLimiter(t, srv, Options{Default: 1, Burst: burst, Lease: 16, LeaseMax: 16, LeaseTTL: time.Hour})
	ctx := context.Background()
	warm := l.Stats().Leases
	before := commandCalls(t, srv.addr)
	check := func(i int, src Source) {
		t.Helper()
		d := l.Take(ctx, "acme", "")
		if !d.Allowed || d.Source != src || d.Remaining != burst-1-i {
			t.Fatalf("decision %d: %+v, want admitted from %v with %d left", i, d, src, burst-1-i)
		}
	}
	check(0, SourceRedis)
	for i := 1; i < 12; i++ {
		check(i, SourceLease)
	}
	waitRenewals(t, l, 1) // 4 + 16 tokens
	for i := 12; i < 28; i++ {
		check(i, SourceLease)
	}
	// Decision 27 left 4 of the renewed lease: a second renewal.
	waitRenewals(t, l, 2)
	for i := 28; i < 36; i++ {
		check(i, SourceLease)
	}
	calls := commandCalls(t, srv.addr)
	if got := calls["evalsha"] - before["evalsha"]; got != 3 {
		t.Fatalf("36 decisions ran the script %d times, want 3 (one take, two renewals)", got)
	}
	if st := l.Stats(); st.Leases-warm != 3 || st.Admitted[SourceLease] != 35 {
		t.Fatalf("stats %+v: want 3 more leases and 35 leased admissions", st)
	}
	l.Close()
	level := bucketTokens(t, srv.addr, l.tenant("acme").reqKey)
	if level < burst-36 || level > burst-36+0.5 {
		t.Fatalf("bucket holds %.3f tokens after 36 admissions and Close, want %d", level, burst-36)
	}
}

// bucketTokens reads a request bucket's stored level from Redis.
func bucketTokens(t *testing.T, addr, key string) float64 {
	t.Helper()
	c := rawClient(t, addr)
	s, err := c.Do(context.Background(), c.B().Hget().Key(key).Field("t").Build()).ToString()
	if err != nil {
		t.Fatalf("HGET %s t: %v", key, err)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		t.Fatalf("HGET %s t = %q: %v", key, s, err)
	}
	return v
}

// TestRenewalWithKeyLimit: a relay key's own lease is renewed from both its
// bucket and the tenant's. After 8 keyed decisions (a lease of 8 and its
// renewal of 8), a decision without the key sees 100 - 16 - 1 left.
func TestRenewalWithKeyLimit(t *testing.T) {
	l := newTestLimiter(t, true, Options{Default: 1, Burst: 100, Keys: map[string]int{"k1": 1}, Lease: 8, LeaseMax: 8, LeaseTTL: time.Hour})
	ctx := context.Background()
	for i := 0; i < 8; i++ {
		want := SourceLease
		if i == 0 {
			want = SourceRedis
		}
		if d := l.Take(ctx, "acme", "k1"); !d.Allowed || d.Source != want || d.Remaining != 99-i {
			t.Fatalf("keyed decision %d: %+v, want from %v with %d left", i, d, want, 99-i)
		}
		if i == 6 { // decision 5 left 2 (RenewBelow 2) and queued the renewal
			waitRenewals(t, l, 1)
		}
	}
	if d := l.Take(ctx, "acme", "k1"); !d.Allowed || d.Source != SourceLease || d.Remaining != 91 {
		t.Fatalf("keyed decision 8: %+v, want from the renewed lease with 91 left", d)
	}
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis || d.Remaining != 100-16-1 {
		t.Fatalf("decision without the key: %+v, want from Redis with %d left", d, 100-16-1)
	}
}

// TestRenewalNotForSlowTenant: a lease used up to RenewBelow only after
// half its LeaseTTL is not renewed: a tenant that slow would let the next
// lease expire unused.
func TestRenewalNotForSlowTenant(t *testing.T) {
	l := newTestLimiter(t, true, Options{Default: 1, Burst: 1000, Lease: 8, RenewBelow: 6, LeaseTTL: 2 * time.Second})
	ctx := context.Background()
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
		t.Fatalf("first decision %+v", d)
	}
	time.Sleep(1100 * time.Millisecond) // past half the TTL
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceLease {
		t.Fatalf("second decision %+v: want admitted from the lease", d)
	}
	time.Sleep(100 * time.Millisecond) // what a renewal would need
	if st := l.Stats(); st.LeaseRenewals != 0 {
		t.Fatalf("stats %+v: a lease used this slowly must not be renewed", st)
	}
}

// TestRenewalNearLimitTakesNothing: near the limit a renewal takes no token
// and writes no blocked-until key. Run directly against a bucket of 10
// holding 2 (below half): nothing is taken, and the tenant is not blocked.
func TestRenewalNearLimitTakesNothing(t *testing.T) {
	l := newTestLimiter(t, true, Options{Default: 1, Burst: 10, Lease: 16, Timeout: 2 * time.Second})
	ctx := context.Background()
	var d Decision
	for i := 0; i < 8; i++ {
		if d = l.Take(ctx, "acme", ""); !d.Allowed {
			t.Fatalf("decision %d refused: %+v", i, d)
		}
	}
	if d.Remaining != 2 {
		t.Fatalf("after 8 admissions: %+v, want 2 left", d)
	}
	ts := l.tenant("acme")
	ts.mu.Lock()
	r := renewal{ts: ts, lim: ts.seen, gen: ts.leaseGen, size: 16}
	ts.mu.Unlock()
	n, lv, ok := l.renewScript(r)
	if !ok || n != 0 || lv.req < 2 || lv.req > 2.5 {
		t.Fatalf("renew on a bucket of 2: took %d (ok %v, level %.3f), want nothing taken", n, ok, lv.req)
	}
	for i := 0; i < 2; i++ {
		if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis || d.Remaining != 1-i {
			t.Fatalf("decision %d after the renewal: %+v, want admitted by Redis with %d left", i, d, 1-i)
		}
	}
	if d := l.Take(ctx, "acme", ""); d.Allowed {
		t.Fatalf("11th decision %+v: want refused", d)
	}
	// An empty bucket: the renewal still writes no blocked-until key (the
	// refusal above wrote one; it is deleted first).
	c := rawClient(t, l.redis.o.RedisAddr)
	if err := c.Do(ctx, c.B().Del().Key(ts.blkKey).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	if n, _, ok := l.renewScript(r); !ok || n != 0 {
		t.Fatalf("renew on an empty bucket took %d (ok %v)", n, ok)
	}
	if n, err := c.Do(ctx, c.B().Exists().Key(ts.blkKey).Build()).AsInt64(); err != nil || n != 0 {
		t.Fatalf("blocked-until key exists (%d, %v) after a renewal: a renewal refuses no one", n, err)
	}
}

// TestRenewalAfterDropGivesBack: a renewal that comes back after the
// tenant's leases were dropped (here: new limits seen) does not become a
// lease; its tokens go back to the bucket.
func TestRenewalAfterDropGivesBack(t *testing.T) {
	l := newTestLimiter(t, true, Options{Default: 1, Burst: 1000, Lease: 16, RenewBelow: -1})
	ctx := context.Background()
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
		t.Fatalf("first decision %+v", d)
	}
	ts := l.tenant("acme")
	ts.mu.Lock()
	r := renewal{ts: ts, lim: ts.seen, gen: ts.leaseGen, size: 16}
	l.dropLeases(ts) // the 15 unused tokens are queued for give-back
	ts.mu.Unlock()
	l.renew(r) // takes 16 more, which must go back too
	ts.mu.Lock()
	left := ts.lease.left
	ts.mu.Unlock()
	if left != 0 {
		t.Fatalf("lease holds %d tokens after a renewal from before the drop, want 0", left)
	}
	deadline := time.Now().Add(20 * time.Second)
	for l.Stats().LeaseTokensReturned < 31 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want 31 tokens given back (15 of the lease, 16 of the renewal)", l.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis || d.Remaining != 998 {
		t.Fatalf("decision after the give-backs: %+v, want admitted by Redis with 998 left", d)
	}
}

// TestRenewalsKeepSharedCountsExact: four limiters (four relays) that renew
// their leases share a bucket of 400 that does not refill while the test
// runs, and two workers each try until Redis refuses them three times in a
// row. Never more than 400 are admitted; a limiter whose workers stopped
// may still hold leased tokens, which Close gives back: the bucket then
// holds exactly 400 minus the admissions, so no token was lost either.
func TestRenewalsKeepSharedCountsExact(t *testing.T) {
	const burst = 400
	ls := relays(t, 4, Options{Default: 1, Burst: burst, Lease: 16})
	var admitted atomic.Int64
	inWorkers(ls, 2, func(l *Limiter) {
		for refused, i := 0, 0; refused < 3 && i < 2*burst; i++ {
			if d := l.Take(context.Background(), "acme", ""); d.Allowed {
				admitted.Add(1)
				refused = 0
			} else {
				refused++
			}
		}
	})
	var renewals uint64
	for _, l := range ls {
		renewals += l.Stats().LeaseRenewals
		l.Close()
	}
	n := admitted.Load()
	level := bucketTokens(t, ls[0].redis.o.RedisAddr, ls[0].tenant("acme").reqKey)
	t.Logf("admitted %d, %d renewals, %.3f tokens in the bucket after Close", n, renewals, level)
	if n > burst || n < burst/2 {
		t.Fatalf("admitted %d, want at most %d (and most of them)", n, burst)
	}
	if want := float64(burst - n); level < want || level > want+0.5 {
		t.Fatalf("bucket holds %.3f tokens after Close, want %.0f: leased tokens were lost", level, want)
	}
}
