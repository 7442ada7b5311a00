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

// TestFallbackChargedBack: what the local fallback admitted while Redis
// could not decide (here: it hangs) is charged to the tenant's Redis bucket
// once Redis decides again, so the outage gives the tenant no second burst.
// Before, the Redis bucket had refilled meanwhile as if nothing had been
// admitted, and the tenant got its whole burst again.
func TestFallbackChargedBack(t *testing.T) {
	srv := startOwnRedis(t)
	l, err := New(Options{RedisAddr: srv.addr, Default: 6, Burst: 10, Lease: 1,
		Timeout: 300 * time.Millisecond, ProbeInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis {
			t.Fatalf("request %d before the outage: %+v", i, d)
		}
	}
	srv.Signal(syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			srv.Signal(syscall.SIGCONT)
		}
	}()
	local := 0
	for i := 0; i < 20; i++ {
		if d := l.Take(ctx, "acme", ""); d.Allowed {
			if d.Source != SourceLocal {
				t.Fatalf("admitted by %v while Redis hangs", d.Source)
			}
			local++
		}
	}
	if local < 5 || local > 7 {
		t.Fatalf("the fallback admitted %d, want the 6 left of the burst", local)
	}
	srv.Signal(syscall.SIGCONT)
	stopped = false
	for deadline := time.Now().Add(30 * time.Second); l.Stats().ToRedis == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the limiter never went back to Redis")
		}
	}
	admitted := 0
	for i := 0; i < 10; i++ {
		if d := l.Take(ctx, "acme", ""); d.Allowed {
			admitted++
		}
	}
	// At 6 a minute the bucket refilled by a token or so while this ran.
	if admitted > 2 {
		t.Errorf("back on Redis the tenant was admitted %d more: the fallback's %d were not charged", admitted, local)
	}
}
