package quota

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// moveSlot moves hash slot slot from master from to master to as
// `redis-cli --cluster reshard` does: IMPORTING / MIGRATING, its keys
// MIGRATEd, then the new owner announced to every master.
func moveSlot(t *testing.T, rc *servicetest.RCluster, slot, from, to int) {
	t.Helper()
	do := nodeDo(t, rc)
	fromID, toID := do(from, "CLUSTER", "MYID"), do(to, "CLUSTER", "MYID")
	s := strconv.Itoa(slot)
	do(to, "CLUSTER", "SETSLOT", s, "IMPORTING", fromID)
	do(from, "CLUSTER", "SETSLOT", s, "MIGRATING", toID)
	_, port, _ := strings.Cut(rc.Addrs[to], ":")
	for i := 0; i < 100; i++ {
		keys := strings.Fields(do(from, "CLUSTER", "GETKEYSINSLOT", s, "100"))
		if len(keys) == 0 {
			break
		}
		do(from, append([]string{"MIGRATE", "127.0.0.1", port, "", "0", "5000", "KEYS"}, keys...)...)
	}
	for i := range rc.Addrs {
		do(i, "CLUSTER", "SETSLOT", s, "NODE", toID)
	}
}

// nodeDo returns a function that runs a command on node i of rc, failing
// the test on an error.
func nodeDo(t *testing.T, rc *servicetest.RCluster) func(i int, args ...string) string {
	return func(i int, args ...string) string {
		t.Helper()
		out, err := rc.Do(i, args...)
		if err != nil {
			t.Fatalf("node %d %v: %v", i, args, err)
		}
		return out
	}
}

// TestClusterOverrideAfterSlotMove: a busy tenant, decided by its leases
// (renewed ahead, so its requests never read its override hash), whose
// slot a reshard moves to another master, still sees an HSET of its
// override made there: the client-side cache's tracking of the hash stayed
// with the old master, and the limit stayed the old one for as long as the
// tenant kept busy.
func TestClusterOverrideAfterSlotMove(t *testing.T) {
	rc := servicetest.RedisCluster(t)
	prefix := testPrefix(t)
	ls, c := clusterLimiters(t, rc, 1, Options{Default: 60000, Burst: 1000, CacheTTL: time.Minute, KeyPrefix: prefix})
	l := ls[0]
	ctx := context.Background()
	tn := tenantOnNode(t, rc, prefix, "moved", 0)
	slot := servicetest.KeySlot(prefix + "{" + tn + "}:req")
	// busy takes n requests at a steady pace (a few hundred a second):
	// each lease is renewed ahead before it runs out, so no request of the
	// tenant's reaches Redis itself. It stops at the first decision under
	// limit, if any.
	busy := func(n, limit int) (Decision, int) {
		var d Decision
		i := 0
		for deadline := time.Now().Add(60 * time.Second); i < n && time.Now().Before(deadline); i++ {
			if d = l.Take(ctx, tn, ""); !d.Allowed || d.Limit == limit {
				break
			}
			time.Sleep(3 * time.Millisecond)
		}
		return d, i
	}
	if d, _ := busy(600, 0); !d.Allowed || d.Limit != 1000 {
		t.Fatalf("before the move: %+v", d)
	}
	moveSlot(t, rc, slot, 0, 1)
	t.Cleanup(func() { moveSlot(t, rc, slot, 1, 0) }) // other tests rely on the launcher's slot map
	cfg := prefix + "{" + tn + "}:cfg"
	if err := c.Do(ctx, c.B().Hset().Key(cfg).FieldValue().FieldValue("rpm", "60000").FieldValue("burst", "900").Build()).Error(); err != nil {
		t.Fatal(err)
	}
	d, took := busy(3000, 900)
	if d.Limit != 900 {
		t.Fatalf("after %d requests the tenant's limit is %d, want the override's 900 (stats %+v)", took, d.Limit, l.Stats())
	}
	t.Logf("the override applied after %d requests (stats %+v)", took, l.Stats())
}

// TestClusterSlotMigrating: while one tenant's hash slot migrates (MIGRATING
// on its master, IMPORTING on the other, its keys not moved yet), Redis
// answers that tenant's script TRYAGAIN; the other tenants are still decided
// by Redis. The limiter switched whole to on_redis_error (here deny: every
// tenant of every node refused), and its probe, whose keys share the
// migrating tenant's slot, kept it there until the slot was settled.
func TestClusterSlotMigrating(t *testing.T) {
	rc := servicetest.RedisCluster(t)
	prefix := testPrefix(t)
	ls, _ := clusterLimiters(t, rc, 1, Options{Default: 60000, Burst: 1000, Lease: 1, OnRedisError: OnErrorDeny, KeyPrefix: prefix})
	l := ls[0]
	ctx := context.Background()
	moving, other := tenantOnNode(t, rc, prefix, "moving", 0), tenantOnNode(t, rc, prefix, "other", 1)
	for _, tn := range []string{moving, other} {
		if d := l.Take(ctx, tn, ""); !d.Allowed || d.Source != SourceRedis {
			t.Fatalf("%s before the migration: %+v", tn, d)
		}
	}
	slot := strconv.Itoa(servicetest.KeySlot(prefix + "{" + moving + "}:req"))
	do := nodeDo(t, rc)
	fromID, toID := do(0, "CLUSTER", "MYID"), do(2, "CLUSTER", "MYID")
	do(2, "CLUSTER", "SETSLOT", slot, "IMPORTING", fromID)
	do(0, "CLUSTER", "SETSLOT", slot, "MIGRATING", toID)
	t.Cleanup(func() {
		do(0, "CLUSTER", "SETSLOT", slot, "STABLE")
		do(2, "CLUSTER", "SETSLOT", slot, "STABLE")
	})
	// The migrating tenant: TRYAGAIN, decided by the policy.
	if d := l.Take(ctx, moving, ""); d.Allowed || d.Source != SourceBypass {
		t.Fatalf("%s while its slot migrates: %+v; want the deny policy's refusal", moving, d)
	}
	for i := 0; i < 20; i++ {
		if d := l.Take(ctx, other, ""); !d.Allowed || d.Source != SourceRedis {
			t.Fatalf("%s (another node) while %s's slot migrates, request %d: %+v; want decided by Redis", other, moving, i, d)
		}
	}
	if st := l.Stats(); st.ToFallback != 0 {
		t.Errorf("%d switches to the fallback for one slot", st.ToFallback)
	}
}
