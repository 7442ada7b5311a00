package quota

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// redisDecisionLimiter is a Limiter on the suite's Redis with a key prefix of
// its own and limits no benchmark reaches: every Take runs the script.
func redisDecisionLimiter(tb testing.TB, o Options) *Limiter {
	tb.Helper()
	if o.KeyPrefix == "" {
		o.KeyPrefix = testPrefix(tb)
	}
	o.RedisAddr, _ = sharedRedis(tb, o.KeyPrefix)
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second
	}
	l, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(l.Close)
	return l
}

// serverStats returns the numeric fields of Redis's INFO stats and cpu
// sections ("total_reads_processed", "used_cpu_user", ...).
func serverStats(tb testing.TB, addr string) map[string]float64 {
	tb.Helper()
	info := redisInfo(tb, addr, "stats cpu")
	out := make(map[string]float64)
	for _, line := range strings.Split(info, "\r\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		if x, err := strconv.ParseFloat(v, 64); err == nil {
			out[k] = x
		}
	}
	return out
}

// work is a snapshot of the CPU this process and the Redis server used and
// of the server's read events and commands.
type work struct {
	self  time.Duration // user+system CPU of this process
	redis map[string]float64
}

func snapshot(tb testing.TB, addr string) work {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return work{
		self:  time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		redis: serverStats(tb, addr),
	}
}

// reportWork reports per decision between two snapshots: the CPU this
// process spent (the limiter and rueidis, benchmark loop included), the CPU
// Redis spent, the read events Redis processed (one per batch of commands
// that arrived together: a round trip of a pipelined connection) and the
// commands it ran (the script's own TIME/HMGET/HSET/PEXPIRE included). On the
// shared suite server other users' traffic adds to the Redis numbers.
func reportWork(b *testing.B, before, after work) {
	b.Helper()
	n := float64(b.N)
	r := func(k string) float64 { return after.redis[k] - before.redis[k] }
	b.ReportMetric(float64(after.self-before.self)/n, "cpu-ns/op")
	b.ReportMetric((r("used_cpu_user")+r("used_cpu_sys"))*1e9/n, "redis-cpu-ns/op")
	b.ReportMetric((r("total_reads_processed")-1)/n, "redis-reads/op")
	b.ReportMetric((r("total_commands_processed")-1)/n, "redis-cmds/op")
}

// measure runs decide b.N times (or across goroutines when it calls
// RunParallel itself) and reports allocations and the work per decision,
// and with leases on the share of decisions admitted from a lease and the
// script runs (leases granted and tokens given back) per decision.
func measure(b *testing.B, l *Limiter, run func()) {
	b.Helper()
	before := snapshot(b, l.o.RedisAddr)
	st0 := l.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	run()
	b.StopTimer()
	reportWork(b, before, snapshot(b, l.o.RedisAddr))
	if l.o.Lease > 1 {
		st := l.Stats()
		n := float64(b.N)
		b.ReportMetric(float64(st.Admitted[SourceLease]-st0.Admitted[SourceLease])/n, "leased/op")
		b.ReportMetric(float64(st.Admitted[SourceRedis]-st0.Admitted[SourceRedis])/n, "scripts/op")
		b.ReportMetric(float64(st.LeaseTokensReturned-st0.LeaseTokensReturned)/n, "returned/op")
	}
}

// leaseModes are the lease sizes the decision benchmarks compare, run one
// after the other within each -count round: "off" asks Redis for every
// decision, "lease16" takes leases of the default size.
var leaseModes = []struct {
	name  string
	lease int
}{{"off", 1}, {"lease16", 16}}

// admittedBy reports whether d is an admission from Redis or, with leases
// on, from a lease.
func admittedBy(d Decision, lease int) bool {
	return d.Allowed && (d.Source == SourceRedis || lease > 1 && d.Source == SourceLease)
}

// BenchmarkRedisDecision measures Take through the suite's real Redis
// (RELAY_TEST_REDIS_ADDR): CPU and heap allocations per decision on the
// relay's side and Redis's, and with RunParallel whether concurrent
// decisions share round trips (redis-reads/op well below 1). The admitted
// cases run with leases off and on (Options.Lease 16), interleaved.
func BenchmarkRedisDecision(b *testing.B) {
	ctx := context.Background()
	loop := func(b *testing.B, l *Limiter, tenant, key string, want Source) func() {
		return func() {
			for i := 0; i < b.N; i++ {
				if d := l.Take(ctx, tenant, key); d.Source != want && (l.o.Lease == 1 || d.Source != SourceLease) {
					b.Fatalf("decision %d: %+v, want from %v", i, d, want)
				}
			}
		}
	}
	for _, m := range leaseModes {
		b.Run("admitted/"+m.name, func(b *testing.B) {
			l := redisDecisionLimiter(b, Options{Default: 1 << 30, TokensPerMinute: MaxLimit, Lease: m.lease})
			l.Take(ctx, "acme", "") // loads the script, fills the cache
			measure(b, l, loop(b, l, "acme", "", SourceRedis))
		})
	}
	for _, m := range leaseModes {
		b.Run("admitted-key/"+m.name, func(b *testing.B) {
			l := redisDecisionLimiter(b, Options{Default: 1 << 30, Keys: map[string]int{"k1": 1 << 30}, Lease: m.lease})
			l.Take(ctx, "acme", "k1")
			measure(b, l, loop(b, l, "acme", "k1", SourceRedis))
		})
	}
	b.Run("refused-cache", func(b *testing.B) {
		l := redisDecisionLimiter(b, Options{Default: 1, Burst: 1}) // next token in a minute
		for i := 0; l.Take(ctx, "acme", "").Source != SourceCache; i++ {
			if i == 10 {
				b.Fatal("refusals are not served from the cache")
			}
		}
		measure(b, l, loop(b, l, "acme", "", SourceCache))
	})
	b.Run("debit", func(b *testing.B) {
		l := redisDecisionLimiter(b, Options{Default: 1 << 30, TokensPerMinute: MaxLimit})
		l.Debit(ctx, "acme", 1)
		measure(b, l, func() {
			for i := 0; i < b.N; i++ {
				l.Debit(ctx, "acme", 1)
			}
		})
	})
	// parallel: 32×GOMAXPROCS goroutines deciding for 16 tenants. Compare
	// ns/op and redis-reads/op with "admitted" (one decision in flight).
	for _, m := range leaseModes {
		b.Run("parallel/"+m.name, func(b *testing.B) {
			l := redisDecisionLimiter(b, Options{Default: 1 << 30, TokensPerMinute: MaxLimit, Lease: m.lease})
			tenants := make([]string, 16)
			for i := range tenants {
				tenants[i] = "t" + strconv.Itoa(i)
				l.Take(ctx, tenants[i], "")
			}
			b.SetParallelism(32)
			measure(b, l, func() {
				b.RunParallel(func(pb *testing.PB) {
					for i := 0; pb.Next(); i++ {
						if d := l.Take(ctx, tenants[i%len(tenants)], ""); !admittedBy(d, m.lease) {
							b.Errorf("decision: %+v", d)
							return
						}
					}
				})
			})
		})
	}
}

// BenchmarkRedisDecisionPaced decides the way the relay does under scenario
// 1's load: 64 goroutines, each deciding once and then holding its "stream"
// for 5 to 15ms at random, so decisions arrive spread out (about 6,000/s)
// rather than back to back or in lockstep. "harness" runs the same
// goroutines and sleeps without deciding: subtract its cpu-ns/op (the
// timers' wake-ups) from "decide"'s to get the decisions' own CPU in this
// process; redis-cpu-ns/op is Redis's. "decide" runs with leases off and
// on (Options.Lease 16), interleaved with "harness".
func BenchmarkRedisDecisionPaced(b *testing.B) {
	ctx := context.Background()
	modes := []struct {
		name   string
		decide bool
		lease  int
	}{{"harness", false, 1}, {"decide/off", true, 1}, {"decide/lease16", true, 16}}
	for _, m := range modes {
		decide := m.decide
		b.Run(m.name, func(b *testing.B) {
			l := redisDecisionLimiter(b, Options{Default: 1 << 30, Lease: m.lease})
			const conns = 64
			for i := 0; i < conns; i++ {
				l.Take(ctx, "t"+strconv.Itoa(i%16), "")
			}
			measure(b, l, func() {
				var next atomic.Int64
				var wg sync.WaitGroup
				for g := 0; g < conns; g++ {
					wg.Add(1)
					go func(tenant string) {
						defer wg.Done()
						time.Sleep(rand.N(10 * time.Millisecond))
						for next.Add(1) <= int64(b.N) {
							if !decide {
							} else if d := l.Take(ctx, tenant, ""); !admittedBy(d, m.lease) {
								b.Errorf("decision: %+v", d)
								return
							}
							time.Sleep(5*time.Millisecond + rand.N(10*time.Millisecond))
						}
					}("t" + strconv.Itoa(g%16))
				}
				wg.Wait()
			})
		})
	}
}
