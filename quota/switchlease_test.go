package quota

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestNoLeaseGrantedAfterSwitch: a script run that answers after the
// limiter switched to the fallback (a Take that was in flight when another
// one timed out) grants no lease: the switch ended every lease, and the
// fallback's buckets count the leased tokens as the tenant's. Before the
// fix the late answer granted one, whose tokens the fallback admitted and
// the sweeper later gave back to Redis: admitted twice.
func TestNoLeaseGrantedAfterSwitch(t *testing.T) {
	srv := startOwnRedis(t)
	l := warmLimiter(t, srv, Options{Default: 6000, Burst: 1000, Lease: 16, LeaseTTL: time.Hour, RenewBelow: -1})
	ts := l.tenant("acme")
	lim := limits{rpm: 6000, burst: 1000}
	lv := levels{req: 900}
	l.up.Store(false) // as redisFailed does before forgetLeases
	l.remember(ts, lim, override{}, nil, &lv, 16)
	ts.mu.Lock()
	left := ts.lease.left
	ts.mu.Unlock()
	if left != 0 {
		t.Fatalf("a take answered after the switch granted a lease of %d tokens, want none", left)
	}
	if got := ts.req.level(l.now(), perMs(lim.rpm), float64(lim.burst)); got < 898 || got > 900 {
		t.Errorf("the fallback's bucket holds %.1f, want about 899 (the levels before the take, less this request)", got)
	}
	l.up.Store(true)
	l.remember(ts, lim, override{}, nil, &lv, 16)
	ts.mu.Lock()
	left = ts.lease.left
	ts.mu.Unlock()
	if left != 15 {
		t.Fatalf("with Redis up the same answer granted %d tokens, want 15", left)
	}
}

// TestRenewalSkippedOnFallback: a renewal queued before the switch to the
// fallback does not run the script once the limiter is on it (the tokens
// it took would be no one's).
func TestRenewalSkippedOnFallback(t *testing.T) {
	srv := startOwnRedis(t)
	l := warmLimiter(t, srv, Options{Default: 6000, Burst: 1000, Lease: 16, LeaseTTL: time.Hour, RenewBelow: -1})
	ctx := context.Background()
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
		t.Fatalf("first decision %+v", d)
	}
	ts := l.tenant("acme")
	ts.mu.Lock()
	r := renewal{ts: ts, lim: ts.seen, gen: ts.leaseGen, size: 16}
	ts.mu.Unlock()
	before := commandCalls(t, srv.addr)
	l.up.Store(false)
	l.renew(r)
	if got := commandCalls(t, srv.addr)["evalsha"] - before["evalsha"]; got != 0 {
		t.Fatalf("a renewal on the fallback ran the script %d times, want 0", got)
	}
	l.up.Store(true)
	l.renew(r)
	if got := commandCalls(t, srv.addr)["evalsha"] - before["evalsha"]; got != 1 {
		t.Fatalf("a renewal with Redis up ran the script %d times, want 1", got)
	}
}

// TestGiveBackEachWithinTimeout: at Close every tenant's lease goes back
// to Redis, each give-back within Options.Timeout of its own. Before the
// fix one Timeout covered the whole queue: past it every later give-back
// failed and its tokens were lost to the tenants' shared buckets (a
// rolling restart of a relay serving many tenants leaked a lease each).
func TestGiveBackEachWithinTimeout(t *testing.T) {
	const tenants = 2000
	srv := startOwnRedis(t)
	l := warmLimiter(t, srv, Options{Default: 6000, Burst: 1000, Lease: 16, LeaseTTL: time.Hour, RenewBelow: -1})
	ctx := context.Background()
	for i := range tenants {
		if d := l.Take(ctx, fmt.Sprintf("t%d", i), ""); !d.Allowed || d.Source != SourceRedis {
			t.Fatalf("tenant %d: %+v", i, d)
		}
	}
	// One Timeout of 100 ms is far less than 2000 round trips take; each
	// of them takes far less than 100 ms, even under -race on busy cores.
	l.o.Timeout = 100 * time.Millisecond
	start := time.Now()
	l.Close()
	st := l.Stats()
	t.Logf("Close gave back %d tokens in %v", st.LeaseTokensReturned, time.Since(start))
	if want := uint64(1+tenants) * 15; st.LeaseTokensReturned != want || st.RedisErrors != 0 {
		t.Fatalf("Close gave back %d tokens with %d Redis errors, want %d (every lease's 15) and none", st.LeaseTokensReturned, st.RedisErrors, want)
	}
}

// TestLoweredLimitKeepsEmptyBucket: a tenant that ran its bucket dry and
// whose limit an operator then lowers stays refused at the new rate. Before
// the fix the bucket expired once it would have been full at the old rate
// (about 1.2 s here) and then read as full under the new limits: 20
// requests admitted at once against a rate of one a minute.
func TestLoweredLimitKeepsEmptyBucket(t *testing.T) {
	prefix := testPrefix(t)
	_, c := sharedRedis(t, prefix)
	l := newTestLimiter(t, true, Options{Default: 6000, Burst: 20, Lease: 1, KeyPrefix: prefix})
	ctx := context.Background()
	drained := false
	for range 500 {
		if !l.Take(ctx, "acme", "").Allowed {
			drained = true
			break
		}
	}
	if !drained {
		t.Fatal("500 requests at 6000/min with a burst of 20 were all admitted")
	}
	cfg := prefix + "{acme}:cfg"
	if err := c.Do(ctx, c.B().Hset().Key(cfg).FieldValue().FieldValue("rpm", "1").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // past the old rate's refill of 20 tokens (0.2 s, expiry 1.2 s)
	admitted := 0
	for range 5 {
		if d := l.Take(ctx, "acme", ""); d.Allowed {
			admitted++
		} else if d.Limit != 20 {
			t.Fatalf("decision %+v: want the tenant's burst of 20 under the new rate", d)
		}
	}
	if admitted > 1 {
		t.Fatalf("%d of 5 requests admitted at 1/min right after the bucket ran dry, want at most 1", admitted)
	}
}

// TestOneRenewalAtATime: a lease that ends while its renewal is still
// queued leaves the next lease marked as renewing, so that it queues no
// second renewal before the first is done. Before the fix the next lease
// queued its own, and both merged into it: more than the two leases' worth
// of tokens the README allows one instance to hold.
func TestOneRenewalAtATime(t *testing.T) {
	srv := startOwnRedis(t)
	l := warmLimiter(t, srv, Options{Default: 6000, Burst: 1000, Lease: 16, LeaseTTL: time.Hour})
	ctx := context.Background()
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
		t.Fatalf("first decision %+v", d)
	}
	ts := l.tenant("acme")
	ts.mu.Lock()
	ts.lease.renewing = true // as if a renewal were queued and not run yet
	ts.lease.left = 0        // used up: the next decision asks Redis
	ts.mu.Unlock()
	if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
		t.Fatalf("decision after the lease ran out %+v: want Redis's", d)
	}
	// Down to the renewal point of the new lease (16: 15 left, renewed at 4).
	for i := range 12 {
		if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceLease {
			t.Fatalf("leased decision %d: %+v", i, d)
		}
	}
	time.Sleep(300 * time.Millisecond) // a renewal queued now would have run
	if n := l.Stats().LeaseRenewals; n != 0 {
		t.Fatalf("%d renewals ran while one was still marked out, want 0", n)
	}
	// A switch to the fallback ends the lease but keeps the mark too.
	l.forgetLeases()
	ts.mu.Lock()
	marked := ts.lease.renewing
	ts.mu.Unlock()
	if !marked {
		t.Fatal("forgetLeases cleared the mark of a renewal still out")
	}
}

// TestReconnectStopsRenewalsUntilTracked: after the limiter's connection
// is lost (CLIENT KILL: rueidis reconnects and flushes its client-side
// cache), Redis no longer tells this relay when a tenant's override hash
// changes. A busy tenant whose leases renewals kept topped up never asked
// Redis again, so an HSET lowering its limit made after the reconnect never
// applied. Now renewals wait until a decision reads the hash again.
func TestReconnectStopsRenewalsUntilTracked(t *testing.T) {
	srv := startOwnRedis(t)
	prefix := testPrefix(t)
	l := warmLimiter(t, srv, Options{Default: 6000, Burst: 1000, Lease: 16, LeaseTTL: time.Hour, KeyPrefix: prefix})
	ctx := context.Background()
	take := func() Decision {
		d := l.Take(ctx, "acme", "")
		time.Sleep(5 * time.Millisecond) // paced: renewals keep up
		return d
	}
	for range 50 {
		take()
	}
	c := rawClient(t, srv.addr)
	redisDo(t, c, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
	for range 50 {
		take()
	}
	redisDo(t, c, "HSET", prefix+"{acme}:cfg", "rpm", "600", "burst", "50")
	for i := range 600 {
		if d := take(); d.Limit == 50 {
			t.Logf("the new limit applied %d decisions after the HSET", i)
			return
		}
	}
	t.Fatal("600 decisions after the HSET still saw the old limit")
}
