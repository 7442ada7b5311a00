package main

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestShowClusterShardDown runs the relay binary's `show` against the
// ClickHouse test cluster (two shards of two replicas) with both replicas
// of shard 2 killed (kill -9): a row of shard 1 is printed (exit 0, a
// warning naming shard 2); a row of shard 2 is no clean miss: exit 2
// (the lookup could not be completed) with one short line that names
// shard 2 and its replicas, none of the server's code 279 text. No other
// test of this package uses the cluster, so this one stops it at the end.
func TestShowClusterShardDown(t *testing.T) {
	c := servicetest.ClickHouseCluster(t)
	t.Cleanup(servicetest.StopClickHouseCluster)
	var b [6]byte
	_, _ = rand.Read(b[:])
	db := "relay_show_cl_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		_, _ = servicetest.TryQuery(c.URLs[0], "", "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+c.Name)
	})

	w := newWriter(t, chlog.Options{URLs: c.URLs, Cluster: c.Name, Database: db, SpoolDir: t.TempDir(),
		FlushInterval: 100 * time.Millisecond, InsertTimeout: 10 * time.Second})
	for range 20 {
		rec := sseSplit()
		rec.ID = showID()
		w.Write(rec)
	}
	if err := w.Close(ctx30(t)); err != nil {
		t.Fatal(err)
	}
	if !c.SyncReplicas(30 * time.Second) {
		t.Fatal("replicas did not sync")
	}
	shardIDs := func(node int) []string {
		var ids []string
		for _, r := range servicetest.Query(t, c.URLs[node], db, "SELECT request_id FROM stream_logs_local") {
			ids = append(ids, r["request_id"].(string))
		}
		return ids
	}
	shard1, shard2 := shardIDs(0), shardIDs(2)
	if len(shard1) == 0 || len(shard2) == 0 || len(shard1)+len(shard2) != 20 {
		t.Fatalf("shard rows %d + %d; want both > 0 and 20 in all", len(shard1), len(shard2))
	}
	var replicas []string
	for _, r := range servicetest.Query(t, c.URLs[0], "", "SELECT concat(host_name, ':', toString(port)) AS a FROM system.clusters WHERE cluster = '"+c.Name+"' AND shard_num = 2 ORDER BY replica_num") {
		replicas = append(replicas, r["a"].(string))
	}
	down := "shard 2 (" + strings.Join(replicas, ", ") + ")"

	c.Kill(2)
	c.Kill(3)
	defer c.Start(3)
	defer c.Start(2)

	cfg := writeConfig(t, "  spool_dir: "+t.TempDir()+"\n  clickhouse:\n    urls: ["+strings.Join(c.URLs[:2], ", ")+"]\n    cluster: "+c.Name+"\n    database: "+db+"\n")
	out, errOut, code := relayExec(t, "show", shard1[0], "-config", cfg)
	if code != 0 || !strings.Contains(out, "request "+shard1[0]) || !strings.Contains(out, down+" did not answer") {
		t.Fatalf("shard 1 row: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, id := range []string{shard2[0], strings.Repeat("ab", 16)} {
		out, errOut, code = relayExec(t, "show", id, "-config", cfg)
		t.Logf("relay show %s with shard 2 down: exit %d, stderr (%d bytes): %s", id, code, len(errOut), errOut)
		if code != exitShowError || out != "" {
			t.Errorf("exit %d, want %d (lookup not completed); stdout %q", code, exitShowError, out)
		}
		mustContain(t, errOut, "not found on the shards that answered; "+down+" did not answer", "could not be looked up")
		if strings.Count(strings.TrimSpace(errOut), "\n") != 0 || strings.Contains(errOut, "e.what()") || strings.Contains(errOut, "try again") || len(errOut) > 1000 {
			t.Errorf("stderr is not one short line:\n%s", errOut)
		}
	}
}
