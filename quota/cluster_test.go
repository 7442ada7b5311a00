package quota

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// The tests in this file run against a real 3-master Redis Cluster that the
// package starts once (servicetest.RedisCluster) and TestMain stops. Several
// Limiters with clients of their own stand for several relay instances.

// clusterLimiters returns n Limiters on the cluster with options o, a key
// prefix of the test's own, and a plain cluster client for the test's own
// commands.
func clusterLimiters(t *testing.T, rc *servicetest.RCluster, n int, o Options) ([]*Limiter, rueidis.Client) {
	t.Helper()
	o.RedisAddr = rc.Seeds()
	if o.KeyPrefix == "" {
		o.KeyPrefix = testPrefix(t)
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Second // a busy machine must not make counts wrong
	}
	var ls []*Limiter
	for i := 0; i < n; i++ {
		l, err := New(o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Close)
		ls = append(ls, l)
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: rc.Addrs, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return ls, c
}

// tenantsOnNodes returns, for every node of the cluster, a tenant whose keys
// under prefix live on that node.
func tenantsOnNodes(t *testing.T, rc *servicetest.RCluster, prefix, base string) []string {
	t.Helper()
	out := make([]string, len(rc.Addrs))
	found := 0
	for i := 0; i < 1000 && found < len(out); i++ {
		name := base + strconv.Itoa(i)
		n := rc.NodeForKey(prefix + "{" + name + "}:req")
		if out[n] == "" {
			out[n] = name
			found++
		}
	}
	if found < len(out) {
		t.Fatalf("no tenant for every node: %q", out)
	}
	return out
}

// tenantOnNode returns a tenant named base<i> whose keys live on node.
func tenantOnNode(t *testing.T, rc *servicetest.RCluster, prefix, base string, node int) string {
	t.Helper()
	for i := 0; i < 1000; i++ {
		name := base + strconv.Itoa(i)
		if rc.NodeForKey(prefix+"{"+name+"}:req") == node {
			return name
		}
	}
	t.Fatalf("no tenant %s* on node %d", base, node)
	return ""
}

// TestRedisClusterLauncher checks the launcher's slot map against the
// cluster: NodeForKey names the node that accepts the key without MOVED.
func TestRedisClusterLauncher(t *testing.T) {
	rc := servicetest.RedisCluster(t)
	if len(rc.Addrs) != 3 {
		t.Fatalf("%d nodes, want 3", len(rc.Addrs))
	}
	for _, key := range []string{"a", "relay:rl:{acme}:req", "relay:rl:{acme}:cfg", "{}x", "x{}y", "foo{bar}{zap}", "tenant-42"} {
		s, err := rc.Do(0, "CLUSTER", "KEYSLOT", key)
		if err != nil || s != strconv.Itoa(servicetest.KeySlot(key)) {
			t.Fatalf("KeySlot(%q)=%d, CLUSTER KEYSLOT %q %v", key, servicetest.KeySlot(key), s, err)
		}
		n := rc.NodeForKey(key)
		if _, err := rc.Do(n, "GET", key); err != nil {
			t.Fatalf("GET %q on node %d (NodeForKey): %v", key, n, err)
		}
		if _, err := rc.Do((n+1)%3, "GET", key); err == nil {
			t.Fatalf("GET %q on node %d answered: want MOVED", key, (n+1)%3)
		}
	}
}

// TestClusterThreeLimitersShareBudgets: three Limiters, each with its own
// client (three relays), send 200 requests for each of three tenants whose
// buckets live on the three different masters. Each tenant is admitted
// exactly its burst of 60 in total: the script runs atomically on the
// tenant's master and the tenant's keys share its hash tag.
func TestClusterThreeLimitersShareBudgets(t *testing.T) {
	rc := servicetest.RedisCluster(t)
	const burst, attempts = 60, 200
	prefix := testPrefix(t)
	// 6/min: one token every 10 s, so refill is nil while the test runs.
	ls, _ := clusterLimiters(t, rc, 3, Options{Default: 6, Burst: burst, KeyPrefix: prefix})
	tenants := tenantsOnNodes(t, rc, prefix, "shared")
	admitted := make([]atomic.Int64, len(tenants))
	perLimiter := make([]atomic.Int64, len(ls))
	start := time.Now()
	var wg sync.WaitGroup
	for li, l := range ls {
		for w := 0; w < 2; w++ { // two goroutines per relay
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := context.Background()
				// 200 attempts per tenant spread over 3 limiters x 2 workers.
				for i := 0; i < (attempts+5)/6; i++ {
					for ti, tn := range tenants {
						d := l.Take(ctx, tn, "")
						if d.Source != SourceRedis && d.Source != SourceCache && d.Source != SourceLease {
							t.Errorf("decision from %v: %+v", d.Source, d)
							return
						}
						if d.Allowed {
							admitted[ti].Add(1)
							perLimiter[li].Add(1)
						}
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	for ti, tn := range tenants {
		if got := admitted[ti].Load(); got != burst {
			t.Errorf("tenant %s on node %d: admitted %d of %d across three limiters, want exactly %d", tn, ti, got, attempts+4, burst)
		}
	}
	t.Logf("3 tenants x 204 attempts over 3 limiters in %v; admitted per limiter %d/%d/%d",
		elapsed.Round(time.Millisecond), perLimiter[0].Load(), perLimiter[1].Load(), perLimiter[2].Load())
	for i, l := range ls {
		if st := l.Stats(); st.ToFallback != 0 || st.RedisErrors != 0 {
			t.Errorf("limiter %d fell back: %+v", i, st)
		}
	}
}

// TestClusterRefusalsCachedAcrossSlots: tenants on all three masters are
// refused; afterwards their refusals come from the client-side cache (one
// tracked connection per node) and no node sees a command.
func TestClusterRefusalsCachedAcrossSlots(t *testing.T) {
	rc := servicetest.RedisCluster(t)
	prefix := testPrefix(t)
	ls, _ := clusterLimiters(t, rc, 1, Options{Default: 6, Burst: 3, KeyPrefix: prefix})
	l := ls[0]
	ctx := context.Background()
	tenants := tenantsOnNodes(t, rc, prefix, "cached")
	for _, tn := range tenants {
		for i := 0; i < 3; i++ {
			if d := l.Take(ctx, tn, ""); !d.Allowed || d.Source != SourceRedis {
				t.Fatalf("%s burst request %d: %+v", tn, i, d)
			}
		}
		if d := l.Take(ctx, tn, ""); d.Allowed || d.Source != SourceRedis {
			t.Fatalf("%s first refusal %+v: want the script's", tn, d)
		}
		// The invalidation of the blocked-until key may follow the script's
		// reply by a moment: the next refusals refetch it once.
		for i := 0; ; i++ {
			if d := l.Take(ctx, tn, ""); d.Source == SourceCache {
				break
			} else if d.Allowed || i == 20 {
				t.Fatalf("%s refusal %d not cached: %+v", tn, i, d)
			}
		}
	}
	before := make([]map[string]int64, len(rc.Addrs))
	for i, a := range rc.Addrs {
		before[i] = commandCalls(t, a)
	}
	stBefore := l.Stats()
	const n = 300
	for i := 0; i < n; i++ {
		tn := tenants[i%len(tenants)]
		d := l.Take(ctx, tn, "")
		if d.Allowed || d.Source != SourceCache || d.Limit != 3 || d.RetryAfter <= 0 || d.RetryAfter > 10*time.Second {
			t.Fatalf("cached refusal %d of %s: %+v", i, tn, d)
		}
	}
	for i, a := range rc.Addrs {
		after := commandCalls(t, a)
		for _, cmd := range []string{"evalsha", "eval", "get", "hmget", "multi", "client|caching"} {
			if got := after[cmd] - before[i][cmd]; got != 0 {
				t.Errorf("node %d: %d cached refusals sent %d %s, want 0", i, n, got, cmd)
			}
		}
	}
	if got := l.Stats().Refused[SourceCache] - stBefore.Refused[SourceCache]; got != n {
		t.Errorf("Stats counted %d cache refusals, want %d", got, n)
	}
}

// TestClusterOverridesSeenByAllLimiters: an HSET of relay:rl:{tenant}:cfg
// on the tenant's master reaches three Limiters through their tracked
// caches, for tenants on every master.
func TestClusterOverridesSeenByAllLimiters(t *testing.T) {
	rc := servicetest.RedisCluster(t)
	prefix := testPrefix(t)
	// Burst 3: one request per limiter, none refused before the override (a
	// refusal's blocked-until key would outlive the override: it expires
	// when the old rate would have admitted again).
	ls, c := clusterLimiters(t, rc, 3, Options{Default: 60, Burst: 3, CacheTTL: 10 * time.Second, KeyPrefix: prefix})
	ctx := context.Background()
	tenants := tenantsOnNodes(t, rc, prefix, "override")
	for _, l := range ls {
		for _, tn := range tenants {
			if d := l.Take(ctx, tn, ""); d.Limit != 3 || !d.Allowed {
				t.Fatalf("before the override %s: %+v, want admitted, Limit 3", tn, d)
			}
		}
	}
	// The slowest limiter to see a change bounds propagation.
	seen := func(what string, ok func(Decision) bool) time.Duration {
		t.Helper()
		start := time.Now()
		for li, l := range ls {
			for _, tn := range tenants {
				var d Decision
				for deadline := time.Now().Add(10*time.Second + time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
					if d = l.Take(ctx, tn, ""); ok(d) {
						break
					}
				}
				if !ok(d) {
					t.Fatalf("limiter %d, tenant %s: after %s %+v", li, tn, what, d)
				}
			}
		}
		return time.Since(start)
	}
	for _, tn := range tenants {
		cfg := prefix + "{" + tn + "}:cfg"
		if err := c.Do(ctx, c.B().Hset().Key(cfg).FieldValue().FieldValue("rpm", "6000").FieldValue("burst", "50").Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	took := seen("HSET rpm 6000 burst 50", func(d Decision) bool { return d.Allowed && d.Limit == 50 })
	for _, tn := range tenants {
		if err := c.Do(ctx, c.B().Hset().Key(prefix+"{"+tn+"}:cfg").FieldValue().FieldValue("rpm", "-1").Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	took2 := seen("HSET rpm -1", func(d Decision) bool { return d.Allowed && d.Source == SourceBypass })
	t.Logf("overrides seen by 3 limiters x 3 tenants within %v and %v (CacheTTL 10s)", took.Round(time.Millisecond), took2.Round(time.Millisecond))
}

// TestClusterMasterKilled: the master that owns three tenants' slots is
// killed with SIGKILL and restarted. Three Limiters with on_redis_error
// local, allow and deny decide without an error or a long wait while it is
// down, each by its policy, and all return to Redis once the cluster is
// whole again.
func TestClusterMasterKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a master: about 8 s")
	}
	rc := servicetest.RedisCluster(t)
	prefix := testPrefix(t)
	ctx := context.Background()
	victim := 1
	policies := []string{OnErrorLocal, OnErrorAllow, OnErrorDeny}
	ls := map[string]*Limiter{}
	tenant := map[string]string{}
	for _, p := range policies {
		// Lease 1: every decision asks Redis, so the first one after the
		// kill meets it (a leased token would be admitted before).
		l, _ := clusterLimiters(t, rc, 1, Options{Default: 6, Burst: 10, KeyPrefix: prefix, OnRedisError: p, Lease: 1,
			Timeout: time.Second, ProbeInterval: 100 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)).With("policy", p)})
		ls[p] = l[0]
		tenant[p] = tenantOnNode(t, rc, prefix, "killed-"+p+"-", victim)
	}
	other := tenantOnNode(t, rc, prefix, "alive-", (victim+1)%3)
	for _, p := range policies {
		for i := 0; i < 4; i++ {
			if d := ls[p].Take(ctx, tenant[p], ""); !d.Allowed || d.Source != SourceRedis {
				t.Fatalf("%s before the kill: %+v", p, d)
			}
		}
	}

	// Background load on every limiter, both tenants, through the outage:
	// Take must stay fast.
	var stop atomic.Bool
	var slowest atomic.Int64
	var wg sync.WaitGroup
	for _, p := range policies {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() && i < 1e6; i++ {
				tn := "bg-" + strconv.Itoa(i%4)
				start := time.Now()
				ls[p].Take(ctx, tn, "")
				if d := time.Since(start); int64(d) > slowest.Load() {
					slowest.Store(int64(d))
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}

	killed := time.Now()
	rc.Kill(victim)
	// local: the in-process bucket continues from Redis' level (6 left of 10).
	local := 0
	for i := 0; i < 10; i++ {
		d := ls[OnErrorLocal].Take(ctx, tenant[OnErrorLocal], "")
		if d.Source != SourceLocal {
			t.Fatalf("local, request %d after the kill: %+v", i, d)
		}
		if d.Allowed {
			local++
		}
	}
	if local != 6 {
		t.Errorf("on_redis_error local admitted %d after the kill, want the 6 left in the shared bucket", local)
	}
	for i := 0; i < 10; i++ {
		if d := ls[OnErrorAllow].Take(ctx, tenant[OnErrorAllow], ""); !d.Allowed || d.Source != SourceBypass {
			t.Fatalf("allow, request %d after the kill: %+v", i, d)
		}
		if d := ls[OnErrorDeny].Take(ctx, tenant[OnErrorDeny], ""); d.Allowed || d.Source != SourceBypass || d.RetryAfter <= 0 {
			t.Fatalf("deny, request %d after the kill: %+v", i, d)
		}
	}
	// After cluster-node-timeout the surviving masters refuse every key
	// (CLUSTERDOWN): a tenant on a live master is decided by the policy too.
	var downAfter time.Duration
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if rc.State((victim+1)%3) == "fail" {
			downAfter = time.Since(killed)
			break
		}
	}
	if downAfter == 0 {
		t.Fatal("the surviving masters never reported cluster_state:fail")
	}
	time.Sleep(300 * time.Millisecond)
	for _, p := range policies {
		for i := 0; i < 5; i++ {
			d := ls[p].Take(ctx, other, "")
			want := map[string]Source{OnErrorLocal: SourceLocal, OnErrorAllow: SourceBypass, OnErrorDeny: SourceBypass}[p]
			if d.Source != want || (p == OnErrorDeny) == d.Allowed {
				t.Fatalf("%s, tenant on a live master during CLUSTERDOWN: %+v", p, d)
			}
		}
	}
	down := time.Since(killed)
	restarted := time.Now()
	rc.Restart(victim)
	healed := time.Since(restarted)
	// Back to Redis: the restarted master is empty, so the tenants start
	// with full buckets.
	var backAfter time.Duration
	for _, p := range policies {
		var d Decision
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if d = ls[p].Take(ctx, tenant[p], ""); d.Source == SourceRedis {
				break
			}
		}
		if d.Source != SourceRedis || !d.Allowed {
			t.Fatalf("%s after the restart: %+v, want admitted by Redis", p, d)
		}
	}
	backAfter = time.Since(restarted)
	stop.Store(true)
	wg.Wait()

	for _, p := range policies {
		st := ls[p].Stats()
		t.Logf("%s: stats %+v", p, st)
		if st.ToFallback < 1 || st.ToRedis < 1 || st.Admitted[SourceRedis] == 0 {
			t.Errorf("%s: stats %+v, want switches both ways and Redis decisions", p, st)
		}
		// A probe that only PINGs any node flaps: a live node answers while
		// the cluster is down, the next decision fails again. Measured with
		// such a probe: about 50 switches each way in this outage. Probing
		// the failed key's node leaves one, plus one per node that still
		// said CLUSTERDOWN while the cluster healed.
		if st.ToFallback > 4 {
			t.Errorf("%s: %d switches to the fallback in one outage, want at most 4: the probe flaps", p, st.ToFallback)
		}
		switch p {
		case OnErrorLocal:
			if st.Admitted[SourceLocal] == 0 || st.Refused[SourceLocal] == 0 {
				t.Errorf("local: %+v, want local admissions and refusals", st)
			}
		case OnErrorAllow:
			if st.Admitted[SourceBypass] == 0 || st.Refused[SourceBypass] != 0 {
				t.Errorf("allow: %+v, want bypass admissions only", st)
			}
		case OnErrorDeny:
			if st.Refused[SourceBypass] == 0 || st.Admitted[SourceBypass] != 0 {
				t.Errorf("deny: %+v, want bypass refusals only", st)
			}
		}
	}
	slow := time.Duration(slowest.Load())
	t.Logf("killed master %d: CLUSTERDOWN on the others after %v, down %v; restart to cluster_state:ok %v; all limiters back on Redis %v after the restart; slowest Take %v",
		victim, downAfter.Round(time.Millisecond), down.Round(time.Millisecond), healed.Round(time.Millisecond), backAfter.Round(time.Millisecond), slow)
	if slow > 2*time.Second {
		t.Errorf("a Take took %v during the outage, want at most Timeout (1s) and a margin", slow)
	}
}
