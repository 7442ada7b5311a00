package quota

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestConcurrentDecisionsShareRoundTrips: concurrent decisions go out on the
// one pipelined connection together, so Redis reads them in fewer batches
// (read events, INFO stats total_reads_processed) than there are decisions.
func TestConcurrentDecisionsShareRoundTrips(t *testing.T) {
	srv := startOwnRedis(t)
	l, err := New(Options{RedisAddr: srv.addr, Default: 1 << 30, Timeout: 5 * time.Second, ProbeInterval: time.Hour, Lease: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	const goroutines, each = 64, 50
	for g := 0; g < goroutines; g++ {
		l.Take(ctx, tenantName(g), "") // cache the reads of every tenant
	}
	before := serverStats(t, srv.addr)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(tenant string) {
			defer wg.Done()
			<-start
			for i := 0; i < each; i++ {
				if d := l.Take(ctx, tenant, ""); !d.Allowed || d.Source != SourceRedis {
					t.Errorf("decision %+v, want admitted by Redis", d)
					return
				}
			}
		}(tenantName(g))
	}
	close(start)
	wg.Wait()
	after := serverStats(t, srv.addr)
	decisions := float64(goroutines * each)
	cmds := after["total_commands_processed"] - before["total_commands_processed"] - 1
	reads := after["total_reads_processed"] - before["total_reads_processed"] - 1 // the INFO
	t.Logf("%v decisions from %d goroutines: %v commands, %v read events in Redis (%.1f decisions per read)",
		decisions, goroutines, cmds, reads, decisions/reads)
	if reads >= decisions {
		t.Fatalf("%v decisions took %v read events: concurrent decisions do not share round trips", decisions, reads)
	}
}

func tenantName(i int) string { return "t" + string(rune('a'+i%26)) + string(rune('a'+i/26)) }
