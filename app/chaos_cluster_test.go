package app

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/quota"
	"go.uber.org/goleak"
)

// TestChaosClusterThreeRelays: three relays (each with its own spool
// directory, quota client and ClickHouse node order) on a ClickHouse
// cluster of two shards x two replicas and a 3-master Redis Cluster take
// load from one generator spread over them. One ClickHouse replica is
// killed with SIGKILL and restarted; meanwhile the Redis master owning the
// tenant's slot is killed (the cluster goes CLUSTERDOWN) and restarted.
// No relay answers 5xx, and every answered request is stored exactly once,
// counted by request_id through the Distributed stream_logs.
func TestChaosClusterThreeRelays(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	chDown, settle := 2*time.Second, time.Second
	if chaosLong() {
		chDown, settle = 8*time.Second, 5*time.Second
	}
	if v, err := time.ParseDuration(os.Getenv("CHAOS_CLUSTER_CH_DOWN")); err == nil {
		chDown = v // e.g. 200ms: the replica restarts before its ZooKeeper session expired
	}
	rc := servicetest.RedisCluster(t)
	ch := servicetest.ClickHouseCluster(t)
	// The relays' goroutines count; the cluster launchers' process
	// waiters (a restarted node gets a new one) do not.
	ignore := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/stream-relay/stream-relay/internal/servicetest.startChild.func1")}

	b := make([]byte, 4)
	_, _ = rand.Read(b)
	db := "relay_chaos_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		for _, u := range ch.URLs {
			_, _ = servicetest.TryQuery(u, "", "DROP DATABASE IF EXISTS "+db)
		}
	})
	limits, tenant := withLimits(rc.Seeds(), 1000000, 1000000)
	victimCH := 1 // shard 01 replica r2: relay 1's first node
	var rs []*relay
	for i := 0; i < 3; i++ {
		urls := append(append([]string(nil), ch.URLs[i:]...), ch.URLs[:i]...)
		rs = append(rs, startRelayWith(t, "", func(c *Config) {
			limits(c)
			c.Server.Instance = "relay-" + strconv.Itoa(i)
			c.Storage.ClickHouse.URLs = urls
			c.Storage.ClickHouse.Cluster = ch.Name
			c.Storage.ClickHouse.Database = db
			c.Storage.ClickHouse.FlushInterval = 100 * time.Millisecond
			c.Storage.ClickHouse.BatchRows = 50
			c.Storage.ClickHouse.InsertTimeout = 5 * time.Second
		}))
	}
	victimRedis := rc.NodeForKey("relay:rl:{" + tenant + "}:req")
	l := startClusterLoadHdr(t, rs, 6, map[string]string{mockllm.HeaderChunks: "5", mockllm.HeaderDelayMs: "2"})

	time.Sleep(time.Second)
	start := time.Now()
	ch.Kill(victimCH)
	time.Sleep(chDown / 2)
	rc.Kill(victimRedis)
	time.Sleep(chDown / 2)
	ch.Start(victimCH) // waits until its replicated tables are writable (ZooKeeper session timeout)
	chBack := time.Since(start)
	waitFor(t, 15*time.Second, func() bool { return rc.State((victimRedis+1)%3) == "fail" }, "the Redis Cluster never went down")
	rc.Restart(victimRedis)
	redisBack := time.Since(start)
	for i, r := range rs {
		waitFor(t, 15*time.Second, func() bool {
			st := r.app.limiter.Stats()
			return st.ToRedis >= 1 && st.ToRedis == st.ToFallback
		}, "relay "+strconv.Itoa(i)+" did not return to Redis")
	}
	time.Sleep(settle)
	l.finish()
	answered := l.answered.Load()

	// Drain every spool, stop the relays, count through stream_logs.
	var spooled, dropped, insertErrors, written int64
	var limiterStats []quota.Stats
	for i, r := range rs {
		store := r.app.store
		waitFor(t, 60*time.Second, func() bool { return store.Stats().SpoolFiles == 0 }, "relay "+strconv.Itoa(i)+": spool not replayed")
		limiterStats = append(limiterStats, r.app.limiter.Stats())
		r.stop(t)
		st := store.Stats()
		spooled += st.RowsSpooled
		dropped += st.RowsDropped
		insertErrors += st.InsertErrors
		written += st.RowsWritten
	}
	// The restarted replica may still be fetching parts (18.16 lets its
	// catch-up sleep 10 s and more after a restart): wake every replica's
	// queue, then wait until the Distributed table, read on another node,
	// holds every row.
	got := map[string]int{}
	var missing, dup int64
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		ch.SyncReplicas(10 * time.Second)
		rows, err := servicetest.TryQuery(ch.URLs[3], db, "SELECT request_id, count() AS n FROM stream_logs GROUP BY request_id")
		if err == nil {
			got = map[string]int{}
			for _, row := range rows {
				n, _ := strconv.Atoi(fmt.Sprint(row["n"]))
				got[row["request_id"].(string)] += n
			}
			if missing, dup = exactlyOnce(l.ids, got); missing == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Errorf("rows not complete after 60s: %v", err)
			break
		}
	}
	if missing > 0 {
		explainMissing(t, ch.URLs, db, l.ids, got)
	}
	res := chaosResult{scenario: "cluster/3-relays-replica-killed-redis-master-killed", sent: l.sent.Load(), answered: answered,
		unexpect: l.fivexx.Load() + l.other.Load() + missing + dup, stored: int64(len(got)), spooled: spooled, dropped: dropped,
		leaks: leaksIgnoring(ignore...)}
	t.Logf("ClickHouse replica %d killed and back writable after %v, Redis master %d killed and cluster ok after %v; %d sent, %d answered, %d 5xx, %d other; stored %d (missing %d, twice %d), spooled %d, dropped %d, insert errors %d, rows written (relays' count) %d",
		victimCH, chBack.Round(time.Millisecond), victimRedis, redisBack.Round(time.Millisecond), l.sent.Load(), answered,
		l.fivexx.Load(), l.other.Load(), len(got), missing, dup, spooled, dropped, insertErrors, written)
	for i, st := range limiterStats {
		t.Logf("relay %d limiter: %+v", i, st)
		if st.ToFallback < 1 || st.Admitted[quota.SourceLocal] == 0 {
			t.Errorf("relay %d: limiter %+v, want local decisions while the Redis Cluster was down", i, st)
		}
	}
	if res.unexpect != 0 || dropped != 0 || int64(len(got)) != answered {
		t.Errorf("three relays on the clusters: %+v; missing %d, duplicated %d", res, missing, dup)
	}
	res.emit(t)
}

// leaksIgnoring is leaks with several options.
func leaksIgnoring(opts ...goleak.Option) string {
	testClient.CloseIdleConnections()
	err := goleak.Find(append(opts, fasthttpHousekeeping...)...)
	if err == nil {
		return "none"
	}
	s := err.Error()
	if i := strings.Index(s, "\n"); i > 0 {
		s = s[:i]
	}
	return "goroutines: " + strings.ReplaceAll(s, "|", "/")
}

// explainMissing logs, for answered requests missing from the Distributed
// table, what each node's local replicated table holds of them, and the
// nodes' replication queues: a row lost, or one replica behind.
func explainMissing(t *testing.T, urls []string, db string, ids map[string]bool, got map[string]int) {
	t.Helper()
	var miss []string
	for id := range ids {
		if got[id] == 0 {
			miss = append(miss, "'"+id+"'")
		}
	}
	if len(miss) > 20 {
		miss = miss[:20]
	}
	t.Logf("missing request ids: %s", strings.Join(miss, ","))
	in := strings.Join(miss, ",")
	for i, u := range urls {
		rows, err := servicetest.TryQuery(u, db, "SELECT request_id, instance, _part FROM stream_logs_local WHERE request_id IN ("+in+")")
		t.Logf("node %d local table: %v %v", i, rows, err)
		q, err := servicetest.TryQuery(u, "", "SELECT database, table, type, last_exception, num_tries FROM system.replication_queue WHERE database = '"+db+"'")
		t.Logf("node %d replication queue: %v %v", i, q, err)
		n, err := servicetest.TryQuery(u, db, "SELECT count() AS n FROM stream_logs_local")
		t.Logf("node %d local rows: %v %v", i, n, err)
	}
}
