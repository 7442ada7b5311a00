package quota

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// TestScriptReloadedAfterFlush: decisions send a pinned EVALSHA; a server
// that lost the script (SCRIPT FLUSH, a restart, a failover to a replica
// that never saw it) answers NOSCRIPT, and the same decision loads it with
// EVAL instead of falling back.
func TestScriptReloadedAfterFlush(t *testing.T) {
	srv := startOwnRedis(t)
	l, err := New(Options{RedisAddr: srv.addr, Default: 60, Burst: 10, Timeout: 2 * time.Second, ProbeInterval: time.Hour, Lease: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	c := rawClient(t, srv.addr)
	for round := 0; round < 3; round++ {
		if err := c.Do(ctx, c.B().ScriptFlush().Build()).Error(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			if d := l.Take(ctx, "acme", ""); !d.Allowed || d.Source != SourceRedis || d.Remaining != 10-1-(2*round+i) {
				t.Fatalf("round %d decision %d after SCRIPT FLUSH: %+v", round, i, d)
			}
		}
	}
	calls := commandCalls(t, srv.addr)
	if calls["eval"] != 3 || calls["evalsha"] != 6 {
		t.Errorf("commandstats %v: want 3 EVAL (one per flush) and 6 EVALSHA", calls)
	}
	if st := l.Stats(); st.ToFallback != 0 || st.RedisErrors != 0 {
		t.Fatalf("stats %+v: a flushed script must not count as a Redis failure", st)
	}
}

// TestBucketWrittenInTheFuture: a bucket whose last write is later than
// Redis's clock says now (a failover to a replica whose clock is behind)
// refills from now on. A refused tenant's bucket (refusals do not store
// it) stayed empty until the clock caught up: two minutes of refusals here.
func TestBucketWrittenInTheFuture(t *testing.T) {
	srv := startOwnRedis(t)
	l, err := New(Options{RedisAddr: srv.addr, Default: 60000, Burst: 1, Timeout: 2 * time.Second, ProbeInterval: time.Hour, Lease: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	if d := l.Take(ctx, "acme", ""); !d.Allowed {
		t.Fatalf("first: %+v", d)
	}
	c := rawClient(t, srv.addr)
	future := strconv.FormatInt(time.Now().Add(2*time.Minute).UnixMilli(), 10)
	if err := c.Do(ctx, c.B().Hset().Key("relay:rl:{acme}:req").FieldValue().FieldValue("ts", future).Build()).Error(); err != nil {
		t.Fatal(err)
	}
	l.Take(ctx, "acme", "")            // refused or not: the bucket is empty; now the clock is read
	time.Sleep(100 * time.Millisecond) // 100 tokens' worth at 60000/min
	if d := l.Take(ctx, "acme", ""); !d.Allowed {
		t.Fatalf("100 ms after a future write: %+v, want admitted (refilled from now)", d)
	}
}
