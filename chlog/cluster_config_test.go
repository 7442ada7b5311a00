package chlog

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestClusterSettingMatchesTables: storage.clickhouse.cluster must agree
// with the cluster's tables, or start-up stops with an error naming the
// setting and what the node has. Without the checks a relay started with
// the tables of a cluster in place but without cluster (or with a
// misspelled name) came up silently: without cluster it inserted into the
// Distributed table asynchronously (100 rows with shard 2 down: Flush nil,
// nothing spooled, 49 rows in a queue on node 0's disk, out of reach of the
// spool and the exactly-once checks); with a misspelled name it ran until
// the next migration, whose ALTER ... ON CLUSTER then failed with code 170.
func TestClusterSettingMatchesTables(t *testing.T) {
	c, db := clusterDB(t)
	o := clusterOptions(t, c, db)

	// A fresh database and a name the servers do not know: refused before
	// any ON CLUSTER statement.
	wrong := o
	wrong.Cluster = "relay_clustr"
	_, err := New(wrong)
	t.Logf("unknown cluster: %v", err)
	if err == nil || !strings.Contains(err.Error(), "cluster=relay_clustr") || !strings.Contains(err.Error(), c.Name) {
		t.Fatalf("New with an unknown cluster: %v; want an error naming cluster=relay_clustr and the cluster the node has (%s)", err, c.Name)
	}
	if ans, _ := chQuery(c.URLs[0], "", "EXISTS DATABASE "+db); strings.TrimSpace(ans) == "1" {
		t.Errorf("database %s was created with an unknown cluster name", db)
	}

	closeWriter(t, newWriter(t, o)) // the cluster's tables

	// The tables in place, the name misspelled: refused too.
	_, err = New(wrong)
	if err == nil || !strings.Contains(err.Error(), "cluster=relay_clustr") {
		t.Fatalf("New with an unknown cluster over existing tables: %v; want an error naming cluster=relay_clustr", err)
	}

	// Cluster not set over the cluster's Distributed table: refused, the
	// error says which cluster to set.
	single := o
	single.Cluster = ""
	single.URLs = c.URLs[:1]
	_, err = New(single)
	t.Logf("without cluster: %v", err)
	if err == nil || !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "Distributed") ||
		!strings.Contains(err.Error(), "storage.clickhouse.cluster") || !strings.Contains(err.Error(), c.Name) {
		t.Fatalf("New without cluster over a Distributed table: %v; want a schema error naming storage.clickhouse.cluster and %s", err, c.Name)
	}
}

// TestDistributedClusterArg: the cluster of a Distributed engine as
// system.tables' engine_full shows it, quoted or not.
func TestDistributedClusterArg(t *testing.T) {
	for in, want := range map[string]string{
		"Distributed(relay_cluster, db, stream_logs_local, cityHash64(request_id))":  "relay_cluster",
		`Distributed(\'relay_cluster\', \'db\', \'t\', rand())`:                      "relay_cluster",
		"Distributed('c2', 'db', 't')":                                               "c2",
		"Distributed( `c3` , db, t)":                                                 "c3",
		"MergeTree PARTITION BY toYYYYMMDD(created_at) ORDER BY (route, created_at)": "",
		"": "",
	} {
		if got := distributedClusterArg(in); got != want {
			t.Errorf("distributedClusterArg(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestOptionsNodeListedTwiceSpelledDifferently: chlog.New (used by the
// relay and its commands) refuses one node under two spellings, as it
// refuses the same URL twice: the loopback host named as localhost,
// 127.0.0.1 or ::1 among them (no name is looked up).
func TestOptionsNodeListedTwiceSpelledDifferently(t *testing.T) {
	for _, pair := range [][2]string{
		{"http://ch-1:8123", "http://CH-1:8123"},
		{"http://ch-1", "http://ch-1:80"},
		{"https://ch-1", "https://ch-1:443/"},
		{"http://ch-1:8123", "https://ch-1:8123"},
		{"http://localhost:8123", "http://127.0.0.1:8123"},
		{"http://127.0.0.1:8123", "http://LocalHost:8123/"},
		{"http://[::1]:8123", "http://localhost:8123"},
		{"http://127.0.0.1:8123", "http://[::1]:8123"},
		{"http://[0:0:0:0:0:0:0:1]:8123", "http://[::1]:8123"},
		{"http://[::ffff:127.0.0.1]:8123", "http://127.0.0.1:8123"},
		{"http://localhost.:8123", "http://localhost:8123"},
		{"http://localhost", "https://127.0.0.1:80"},
	} {
		o := Options{URLs: []string{pair[0], pair[1]}, Cluster: "relay_cluster"}
		o.setDefaults()
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), "urls[1]") || !strings.Contains(err.Error(), "listed twice") {
			t.Errorf("urls %q: %v; want urls[1] ... listed twice", pair, err)
		}
	}
	for _, urls := range [][]string{
		{"http://ch-1:8123", "http://ch-1:8124", "http://ch-10:8123"},
		{"http://localhost:8123", "http://127.0.0.1:8124", "http://[::1]:8125"},
		{"http://127.0.0.1:8123", "http://127.0.0.2:8123", "http://localhost-2:8123"},
	} {
		o := Options{URLs: urls}
		o.setDefaults()
		if err := o.validate(); err != nil {
			t.Errorf("three nodes %q: %v", urls, err)
		}
	}
	// url names one of urls, spelled either way.
	o := Options{URL: "http://localhost:8123", URLs: []string{"http://127.0.0.1:8123", "http://127.0.0.1:8124"}}
	o.setDefaults()
	if err := o.validate(); err != nil {
		t.Errorf("url localhost among urls 127.0.0.1: %v", err)
	}
}

// TestClusterFirstStartNodeDown: the first relay on a cluster with one
// node down (no tables yet) starts and stores its rows, as the README
// promises ("the relay carries on if the object exists on the node it
// talks to"). Before, it refused to start: CREATE DATABASE ... ON CLUSTER
// timed out (code 159, the node down) and the existence check behind it,
// EXISTS DATABASE, is a syntax error on 18.16 (code 62), so New returned
// the 159 as a configuration error after 5.4 s. And every further ON
// CLUSTER statement of the start waited distributed_ddl_task_timeout again
// (half of insert_timeout each: three of them outlast the start's
// insert_timeout, and the relay came up spooling, "ClickHouse unreachable").
func TestClusterFirstStartNodeDown(t *testing.T) {
	c, db := clusterDB(t)
	c.Kill(3)
	defer c.Start(3)
	var log schemaLog
	o := clusterOptions(t, c, db)
	o.Logger = log.logger()
	// The start's budget: 10 s for the first statement (half of it), which
	// finds node 3 down, and 10 s for the rest.
	o.InsertTimeout = 20 * time.Second
	start := time.Now()
	w, err := New(o)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("New with node 3 down and no tables yet: %v (after %v)", err, took)
	}
	if w.schemaPending.Load() {
		t.Fatalf("New took %v and left the schema pending (spooling):\n%s", took, log.String())
	}
	writeSSE(w, 50)
	flush(t, w)
	closeWriter(t, w)
	if s := w.Stats(); s.RowsSpooled != 0 {
		t.Errorf("stats %+v; want nothing spooled", s)
	}
	ans, err := chQuery(c.URLs[0], "", "SELECT count(), uniqExact(request_id) FROM "+db+".stream_logs")
	if err != nil || strings.TrimSpace(ans) != "50\t50" {
		t.Errorf("distributed table: %q, %v; want 50 rows, 50 ids", ans, err)
	}
	t.Logf("New with node 3 down: %v", took)
}

// TestClusterZooKeeperDownAtFirstStart: the first relay on a cluster
// starts while ZooKeeper is down (no tables yet): it comes up spooling, as
// with ZooKeeper lost later (README: "ZooKeeper down ... blocks spooled"),
// creates the tables once ZooKeeper is back and replays every row once.
// Before, New returned CREATE DATABASE ... ON CLUSTER's code 999
// ("Coordination::Exception: Session expired") as a configuration error
// after 17 ms: the relay did not start (a crash loop until ZooKeeper came
// back; an upgrade whose migration needs ALTER ... ON CLUSTER the same).
func TestClusterZooKeeperDownAtFirstStart(t *testing.T) {
	c, db := clusterDB(t)
	var log schemaLog
	o := clusterOptions(t, c, db)
	o.Logger = log.logger()
	c.StopZooKeeper()
	restarted := false
	defer func() {
		if !restarted {
			c.StartZooKeeper()
			c.WaitWritable(30 * time.Second)
		}
	}()
	w, err := New(o)
	if err != nil {
		t.Fatalf("New with ZooKeeper down: %v", err)
	}
	want := writeSSE(w, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_ = w.Flush(ctx) // spooled
	cancel()
	if s := w.Stats(); s.RowsSpooled != 50 {
		t.Errorf("stats %+v; want the 50 rows spooled while ZooKeeper is down", s)
	}
	c.StartZooKeeper()
	restarted = true
	if !c.WaitWritable(30 * time.Second) {
		t.Fatal("tables still read-only 30 s after ZooKeeper came back")
	}
	w.kickReplayer()
	drain(t, w, 60*time.Second)
	assertClusterExactlyOnce(t, c, db, want)
}

// TestDistributedMismatch: an existing Distributed table is the relay's
// only over <db>.<table>_local with cityHash64(request_id) as its key:
// over another table the relay would migrate one and fill the other, and
// with another key a block sent again lands on other shards, stored twice.
func TestDistributedMismatch(t *testing.T) {
	for in, want := range map[string]string{
		"Distributed(relay_cluster, relay, stream_logs_local, cityHash64(request_id))":               "",
		`Distributed(\'relay_cluster\', \'relay\', \'stream_logs_local\', cityHash64( request_id ))`: "",
		"Distributed(relay_cluster, relay, stream_logs_local, rand())":                               "sharding key rand()",
		"Distributed(relay_cluster, relay, stream_logs_local)":                                       "sharding key none",
		"Distributed(relay_cluster, other, stream_logs_local, cityHash64(request_id))":               "over other.stream_logs_local, not relay.stream_logs_local",
		"Distributed(relay_cluster, relay, logs_v2, cityHash64(request_id))":                         "over relay.logs_v2",
		"MergeTree PARTITION BY toYYYYMMDD(created_at) ORDER BY (route, created_at)":                 "",
	} {
		got := distributedMismatch(in, "relay", "stream_logs_local")
		if want == "" && got != "" || want != "" && !strings.Contains(got, want) {
			t.Errorf("distributedMismatch(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestDDLLeftToQueue: an ON CLUSTER failure is let pass (its object being
// on this node) only when nothing is left undone: a host that did not
// answer in time runs it from the DDL queue when back (and the start's
// next statements wait for hosts only briefly), or the object was made
// already. Another host's own error (a read-only replica) fails the start:
// that shard could otherwise stay without the table or column for good.
func TestDDLLeftToQueue(t *testing.T) {
	for _, tt := range []struct {
		err      error
		left     bool
		hostDown bool
	}{
		{&Exception{Code: 159, Message: "Watching task is executing longer than distributed_ddl_task_timeout"}, true, true},
		{&Exception{Code: 44, Message: "There was an error on [ch2:9000]: Code: 44, e.displayText() = DB::Exception: Cannot add column tokens_in: column with this name already exists"}, true, false},
		{&Exception{Code: 57, Message: "Table relay.stream_logs_local already exists"}, true, false},
		{&Exception{Code: 242, Message: "There was an error on [ch3:9000]: Code: 242, e.displayText() = DB::Exception: Table is in readonly mode"}, false, false},
		{&Exception{Code: 0, Status: 502}, false, false},
		{errors.New("connection refused"), false, false},
	} {
		w := &Writer{ch: &chClient{}}
		if got := w.ddlLeftToQueue(tt.err); got != tt.left || w.ch.ddlHostDown.Load() != tt.hostDown {
			t.Errorf("%v: left to the queue %v (host down %v), want %v (%v)", tt.err, got, w.ch.ddlHostDown.Load(), tt.left, tt.hostDown)
		}
	}
}
