package chlog

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClusterFindShardDown: both replicas of shard 2 killed (kill -9).
// Find still finds the rows stored on shard 1, read through the
// Distributed table with skip_unavailable_shards=1, with a warning naming
// shard 2; a row of shard 2 (and one never stored) is no clean miss but
// ErrIncomplete, its error one short line naming shard 2 and its
// replicas, without the kilobytes of the server's code 279 text. Once the
// shard is back every row is found and a miss is clean again.
func TestClusterFindShardDown(t *testing.T) {
	c, db := clusterDB(t)
	w := newWriter(t, clusterOptions(t, c, db))
	var ids []string
	for i := range 20 {
		r := sseRecord(i, 2)
		ids = append(ids, r.IDString())
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, w)
	closeWriter(t, w)
	if s1, s2 := shardTotals(t, c, db); s1+s2 != len(ids) || s1 == 0 || s2 == 0 {
		t.Fatalf("shard rows %d + %d; want both > 0 and %d in all", s1, s2, len(ids))
	}
	shard1 := strings.Fields(mustQuery(t, c.URLs[0], db, "SELECT request_id FROM stream_logs_local"))
	shard2 := strings.Fields(mustQuery(t, c.URLs[2], db, "SELECT request_id FROM stream_logs_local"))
	down := "shard 2 (" + strings.Join(strings.Fields(mustQuery(t, c.URLs[0], "",
		"SELECT concat(host_name, ':', toString(port)) FROM system.clusters WHERE cluster = '"+c.Name+"' AND shard_num = 2 ORDER BY replica_num")), ", ") + ")"
	never := strings.Repeat("ab", 16)

	c.Kill(2)
	c.Kill(3)
	restored := false
	restore := func() {
		if !restored {
			restored = true
			c.Start(2)
			c.Start(3)
		}
	}
	defer restore()

	// The first URL is a node of the dead shard: Find moves on to node 0.
	o := FindOptions{URLs: []string{c.URLs[2], c.URLs[0]}, Database: db, SpoolDir: t.TempDir()}
	for _, id := range shard1 {
		f, err := find(t, o, id)
		if err != nil {
			t.Fatalf("shard 1 row %s with shard 2 down: %v (%d bytes)", id, err, len(err.Error()))
		}
		if f.Row.RequestID != id || len(f.Row.Chunks) != 2 {
			t.Fatalf("found %+v", f)
		}
		if len(f.Warnings) != 2 || !strings.Contains(f.Warnings[1], down+" did not answer") {
			t.Fatalf("warnings %q; want node 2 refused and %s named", f.Warnings, down)
		}
		for _, w := range f.Warnings {
			checkShortText(t, w)
		}
		if id == shard1[0] {
			t.Logf("found with shard 2 down, warnings %q", f.Warnings)
		}
	}
	for _, id := range append(slices.Clone(shard2), never) {
		f, err := find(t, o, id)
		if f != nil || !errors.Is(err, ErrIncomplete) || errors.Is(err, ErrNotFound) {
			t.Fatalf("row %s with its shard down: %+v, %v; want ErrIncomplete and no ErrNotFound", id, f, err)
		}
		nf, _ := errors.AsType[*NotFoundError](err)
		if !slices.Equal(nf.Unanswered, []string{down}) {
			t.Fatalf("unanswered %q; want [%s]", nf.Unanswered, down)
		}
		if want := "not found on the shards that answered; " + down + " did not answer"; !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v; want %q", err, want)
		}
		checkShortText(t, err.Error())
		if id == never {
			t.Logf("miss with shard 2 down (%d bytes): %v", len(err.Error()), err)
		}
	}

	restore()
	o.URLs = c.URLs
	for _, id := range ids {
		f, err := find(t, o, id)
		if err != nil || f.Row.RequestID != id || len(f.Warnings) != 0 {
			t.Fatalf("row %s with every shard up: %+v, %v", id, f, err)
		}
	}
	if _, err := find(t, o, never); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrIncomplete) {
		t.Fatalf("never stored, every shard up: %v; want a clean miss", err)
	}
}

// checkShortText fails when s carries the server's multi-line text.
func checkShortText(t *testing.T, s string) {
	t.Helper()
	if strings.Contains(s, "\n") || strings.Contains(s, "e.what()") || strings.Contains(s, "e.displayText()") || len(s) > 1000 {
		t.Fatalf("%d bytes, server text not trimmed:\n%s", len(s), s)
	}
}

// TestClusterFindLaggingReplica: a row on a shard one of whose replicas has
// not fetched it yet (its replication queue behind: here SYSTEM STOP
// FETCHES) is found on every lookup. The Distributed read picks a replica
// per shard at random, and one up to 300 s behind (ClickHouse's default)
// answered "not found" for a row that is stored.
func TestClusterFindLaggingReplica(t *testing.T) {
	c, db := clusterDB(t)
	w := newWriter(t, clusterOptions(t, c, db))
	// Neither replica of shard 2 fetches; the one the insert reaches has
	// the rows, the other stays behind.
	fetches := func(i int, on bool) {
		verb := "STOP"
		if on {
			verb = "START"
		}
		mustQuery(t, c.URLs[i], "", "SYSTEM "+verb+" FETCHES "+db+".stream_logs_local")
	}
	fetches(2, false)
	fetches(3, false)
	t.Cleanup(func() {
		for _, i := range []int{2, 3} {
			_, _ = chQuery(c.URLs[i], "", "SYSTEM START FETCHES "+db+".stream_logs_local")
		}
	})
	for i := range 40 {
		if err := w.Write(sseRecord(i, 2)); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, w)
	closeWriter(t, w)
	onNode := func(i int) []string {
		return strings.Fields(mustQuery(t, c.URLs[i], db, "SELECT request_id FROM stream_logs_local"))
	}
	lagging, behind := onNode(2), 3
	if len(lagging) == 0 {
		lagging, behind = onNode(3), 2
	}
	if len(lagging) == 0 || len(onNode(behind)) != 0 {
		t.Fatalf("shard 2 rows on its replicas: %d and %d; want them on one", len(onNode(2)), len(onNode(3)))
	}
	fetches(5-behind, true)     // the current one: it has them all
	time.Sleep(2 * time.Second) // the replica's delay grows past a second
	o := FindOptions{URLs: []string{c.URLs[0]}, Database: db, SpoolDir: t.TempDir()}
	for _, id := range lagging {
		for try := range 6 {
			f, err := find(t, o, id)
			if err != nil || f.Row.RequestID != id {
				t.Fatalf("row %s, stored on one replica of its shard, lookup %d: %+v, %v", id, try+1, f, err)
			}
		}
	}
	t.Logf("%d rows stored on one replica of shard 2 found 6 times each", len(lagging))
	// A readonly=1 user may change no setting: its lookup is made without
	// (once the replica caught up: it may be asked then).
	fetches(behind, true)
	c.SyncReplicas(30 * time.Second)
	o.User = "reader"
	if f, err := find(t, o, lagging[0]); err != nil || f.Row.RequestID != lagging[0] {
		t.Fatalf("row %s looked up by a readonly user: %+v, %v", lagging[0], f, err)
	}
}
