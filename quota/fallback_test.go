package quota

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

func TestFallbackPolicies(t *testing.T) {
	tests := []struct {
		give        string
		wantAllowed bool
		wantSource  Source
	}{
		{give: "", wantAllowed: true, wantSource: SourceLocal}, // "local" is the default
		{give: OnErrorLocal, wantAllowed: true, wantSource: SourceLocal},
		{give: OnErrorAllow, wantAllowed: true, wantSource: SourceBypass},
		{give: OnErrorDeny, wantAllowed: false, wantSource: SourceBypass},
	}
	for _, tt := range tests {
		t.Run("on_redis_error="+tt.give, func(t *testing.T) {
			l, err := New(Options{RedisAddr: servicetest.FreeAddr(t), OnRedisError: tt.give, Default: 60, Burst: 2, ProbeInterval: time.Hour})
			if err != nil {
				t.Fatalf("unreachable Redis at start must not fail New: %v", err)
			}
			defer l.Close()
			d := l.Take(context.Background(), "acme", "")
			if d.Allowed != tt.wantAllowed || d.Source != tt.wantSource {
				t.Fatalf("got %+v, want allowed=%v source=%v", d, tt.wantAllowed, tt.wantSource)
			}
			if !d.Allowed && d.RetryAfter <= 0 {
				t.Fatalf("deny without RetryAfter: %+v", d)
			}
			if tt.wantSource == SourceLocal {
				// The fallback keeps the limits: burst 2.
				l.Take(context.Background(), "acme", "")
				if d := l.Take(context.Background(), "acme", ""); d.Allowed {
					t.Fatalf("local fallback admitted past the burst: %+v", d)
				}
			}
			if st := l.Stats(); st.ToFallback != 1 || st.ToRedis != 0 {
				t.Fatalf("stats %+v: want one switch to fallback", st)
			}
		})
	}
}

func TestRedisKilledAndRestarted(t *testing.T) {
	srv := startOwnRedis(t)
	l, err := New(Options{
		RedisAddr:     srv.addr,
		Default:       600000, // never the limit here: every request must be admitted
		Timeout:       200 * time.Millisecond,
		ProbeInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()

	// Load from a few goroutines while Redis dies and returns.
	var stop atomic.Bool
	var refused, total atomic.Int64
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; !stop.Load(); i++ {
				d := l.Take(ctx, "tenant"+strconv.Itoa(i%8), "")
				total.Add(1)
				if !d.Allowed {
					refused.Add(1)
				}
			}
		}()
	}
	waitSource := func(want Source, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			if d := l.Take(ctx, "probe", ""); d.Source == want {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("no decision from %v within %v; stats %+v", want, within, l.Stats())
	}
	waitSource(SourceRedis, time.Second)
	srv.Kill()
	waitSource(SourceLocal, 2*time.Second)
	time.Sleep(200 * time.Millisecond) // some load on the fallback
	srv.Start()
	waitSource(SourceRedis, 5*time.Second)
	time.Sleep(100 * time.Millisecond)
	stop.Store(true)
	for g := 0; g < 4; g++ {
		<-done
	}

	st := l.Stats()
	t.Logf("%d decisions, stats %+v", total.Load(), st)
	if refused.Load() != 0 {
		t.Fatalf("%d requests refused during the outage, want 0", refused.Load())
	}
	if st.ToFallback != 1 || st.ToRedis != 1 {
		t.Fatalf("switches %+v: want exactly one each way", st)
	}
	if st.Admitted[SourceLocal] == 0 || st.Admitted[SourceRedis] == 0 || st.RedisErrors == 0 {
		t.Fatalf("stats %+v: want decisions from both redis and local, and counted errors", st)
	}
}

func TestFallbackContinuesFromRedisLevels(t *testing.T) {
	srv := startOwnRedis(t)
	l, err := New(Options{RedisAddr: srv.addr, Default: 60, Burst: 5, Timeout: time.Second, ProbeInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if d := l.Take(ctx, "acme", ""); !d.Allowed || (d.Source != SourceRedis && d.Source != SourceLease) {
			t.Fatalf("burst request %d: %+v", i, d)
		}
	}
	srv.Kill()
	// The first call after the kill may be the one that fails over; both
	// must refuse: the tenant spent its burst in Redis.
	for i := 0; i < 2; i++ {
		if d := l.Take(ctx, "acme", ""); d.Allowed || d.Source != SourceLocal || d.Limit != 5 {
			t.Fatalf("after the kill %+v: want refused by the local bucket continuing from Redis", d)
		}
	}
}

// TestFallbackChargedBack: what the local fallback admits while Redis
// cannot decide is charged to the shared bucket once Redis decides again:
// the bucket's level the fallback went on from is not spent a second time.
// Before, a tenant with 7 of 10 left admitted 5 in the fallback and then 7
// more through Redis (and every other relay in the fallback spent the same
// 7 again).
func TestFallbackChargedBack(t *testing.T) {
	srv := startOwnRedis(t)
	l, err := New(Options{RedisAddr: srv.addr, Default: 6, Burst: 10, Timeout: 200 * time.Millisecond,
		ProbeInterval: 50 * time.Millisecond, Lease: 1}) // every decision asks Redis; 6/min: no refill to speak of
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := range 3 {
		if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
			t.Fatalf("take %d before the stall: %+v", i, d)
		}
	}
	resume := stall(t, srv)
	for i := range 5 {
		if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceLocal {
			t.Fatalf("take %d in the stall: %+v, want admitted by the fallback", i, d)
		}
	}
	resume()
	waitBackOnRedis(t, l)
	if st := l.Stats(); st.ChargedBack != 5 {
		t.Errorf("stats %+v: want the fallback's 5 admissions charged back", st)
	}
	// 10 - 3 - 5 charged (- 1 more when the decision the stall cut ran in
	// Redis late): 2 left at most, plus what refilled (0.1 a second).
	admitted := 0
	for range 12 {
		d := l.Take(ctx, "acme", "")
		if d.Source != SourceRedis && d.Source != SourceCache {
			t.Fatalf("after the switch back: %+v", d)
		}
		if d.Allowed {
			admitted++
		}
	}
	if admitted > 3 {
		t.Fatalf("%d admitted through Redis after the stall; want at most 3 (the fallback's 5 charged)", admitted)
	}
}

// TestFallbackChargeNotCancelled: a decision a cancelled request cut short
// while Redis decides goes to the fallback but owes nothing: no switch
// back would come to collect it (it was charged at the next outage's end).
func TestFallbackChargeNotCancelled(t *testing.T) {
	srv := startOwnRedis(t)
	l, err := New(Options{RedisAddr: srv.addr, Default: 6, Burst: 10, Lease: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 4 {
		_ = l.Take(ctx, "acme", "")
	}
	ts := l.tenant("acme")
	ts.mu.Lock()
	owed := ts.owed
	ts.mu.Unlock()
	if owed != 0 || !l.up.Load() {
		t.Fatalf("owed %d after cancelled decisions with Redis up (up %v); want 0", owed, l.up.Load())
	}
}

// TestFallbackChargeLeasedTokens: the unused tokens of a lease the switch
// to the fallback dropped were debited in Redis already: what the fallback
// admits of them is not charged again.
func TestFallbackChargeLeasedTokens(t *testing.T) {
	srv := startOwnRedis(t)
	l, err := New(Options{RedisAddr: srv.addr, Default: 6, Burst: 10, Lease: 4, Timeout: 200 * time.Millisecond,
		ProbeInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	if d := l.Take(ctx, "acme", ""); !d.Allowed {
		t.Fatalf("first take: %+v", d)
	}
	ts := l.tenant("acme")
	ts.mu.Lock()
	left := ts.lease.left
	ts.mu.Unlock()
	if left == 0 {
		t.Fatal("no lease taken")
	}
	resume := stall(t, srv)
	if d := l.Take(ctx, "other", ""); d.Source != SourceLocal { // its timeout switches the relay
		t.Fatalf("other's take in the stall: %+v", d)
	}
	admitted := int64(0)
	for range 20 {
		if d := l.Take(ctx, "acme", ""); d.Allowed {
			admitted++
		}
	}
	resume()
	waitBackOnRedis(t, l)
	// other's one admission, and acme's less its unused lease.
	if got, want := l.Stats().ChargedBack, uint64(1+admitted-left); got != want {
		t.Fatalf("charged back %d; want %d (acme admitted %d in the fallback, %d of them leased tokens Redis had debited)", got, want, admitted, left)
	}
}

// TestFallbackRefundNotCharged: an admission of the fallback refunded (a
// request not served: an upload cut after 100-continue) is not charged to
// Redis at the switch back: 400 such in a short outage charged 400 and
// locked the tenant out for minutes.
func TestFallbackRefundNotCharged(t *testing.T) {
	srv := startOwnRedis(t)
	l, err := New(Options{RedisAddr: srv.addr, Default: 6, Burst: 10, Lease: 1, Timeout: 200 * time.Millisecond,
		ProbeInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	resume := stall(t, srv)
	if d := l.Take(ctx, "other", ""); d.Source != SourceLocal { // its timeout switches the relay
		t.Fatalf("take in the stall: %+v", d)
	}
	for range 8 {
		d := l.Take(ctx, "acme", "")
		if !d.Allowed || d.Source != SourceLocal {
			t.Fatalf("acme in the stall: %+v", d)
		}
		l.Refund("acme", "", d)
	}
	resume()
	waitBackOnRedis(t, l)
	if got := l.Stats().ChargedBack; got != 1 {
		t.Fatalf("charged back %d; want other's 1 (acme's 8 were refunded)", got)
	}
}

// stall stops srv (SIGSTOP: the connection stays open, nothing comes back)
// and returns the function that resumes it; the test's end resumes it too.
func stall(t *testing.T, srv *ownRedis) (resume func()) {
	t.Helper()
	srv.Signal(syscall.SIGSTOP)
	stopped := true
	resume = func() {
		if stopped {
			stopped = false
			srv.Signal(syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	return resume
}

// waitBackOnRedis waits until l switched back to Redis.
func waitBackOnRedis(t *testing.T, l *Limiter) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for l.Stats().ToRedis == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not back on Redis 20s after SIGCONT: %+v", l.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
