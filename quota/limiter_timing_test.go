package quota

import (
	"context"
	"slices"
	"testing"
	"time"
)

// benchTake runs Take b.N times, timing each call, and reports p50/p99 in
// nanoseconds. The per-call clock reads add some tens of ns to ns/op.
func benchTake(b *testing.B, l *Limiter, tenant string, want Source) {
	b.Helper()
	ctx := context.Background()
	lat := make([]time.Duration, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		d := l.Take(ctx, tenant, "")
		lat[i] = time.Since(start)
		if d.Source != want {
			b.Fatalf("decision %d from %v, want %v: %+v", i, d.Source, want, d)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
}

// reportRoundTrips reports Redis work per decision between two INFO
// commandstats snapshots of a private server: script runs (EVALSHA/EVAL, one
// round trip each), client-side cache fetches (one CLIENT CACHING YES per
// fetched key; the keys of one Take are fetched in one pipelined round trip)
// and all commands, the script's own TIME/HMGET/HSET/PEXPIRE included.
func reportRoundTrips(b *testing.B, before, after map[string]int64) {
	b.Helper()
	d := func(cmd string) float64 { return float64(after[cmd] - before[cmd]) }
	var all float64
	for cmd := range after {
		if cmd != "info" {
			all += d(cmd)
		}
	}
	n := float64(b.N)
	b.ReportMetric((d("evalsha")+d("eval"))/n, "scripts/op")
	b.ReportMetric(d("client|caching")/n, "cachefetch/op")
	b.ReportMetric(all/n, "rediscmds/op")
}

func benchRedisLimiter(b *testing.B, o Options) (*Limiter, *ownRedis) {
	b.Helper()
	srv := startOwnRedis(b)
	o.RedisAddr = srv.addr
	o.Timeout = time.Second
	l, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(l.Close)
	return l, srv
}

func BenchmarkTakeRedisAdmitted(b *testing.B) {
	l, srv := benchRedisLimiter(b, Options{Default: 1 << 30, Lease: 1})
	l.Take(context.Background(), "acme", "") // load the script, fill the cache
	before := commandCalls(b, srv.addr)
	benchTake(b, l, "acme", SourceRedis)
	reportRoundTrips(b, before, commandCalls(b, srv.addr))
}

func BenchmarkTakeRedisRefusedFromCache(b *testing.B) {
	l, srv := benchRedisLimiter(b, Options{Default: 1, Burst: 1}) // next token in a minute
	ctx := context.Background()
	for i := 0; l.Take(ctx, "acme", "").Source != SourceCache; i++ {
		if i == 10 {
			b.Fatal("refusals are not served from the cache")
		}
	}
	before := commandCalls(b, srv.addr)
	benchTake(b, l, "acme", SourceCache)
	reportRoundTrips(b, before, commandCalls(b, srv.addr))
}

func BenchmarkTakeLocal(b *testing.B) {
	l, err := New(Options{Default: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	l.Take(context.Background(), "acme", "")
	benchTake(b, l, "acme", SourceLocal)
}

func BenchmarkTakeLocalParallel(b *testing.B) {
	l, err := New(Options{Default: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	tenants := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for i := 0; pb.Next(); i++ {
			l.Take(ctx, tenants[i%len(tenants)], "")
		}
	})
}
