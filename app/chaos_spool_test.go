package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestChaosCorruptSpoolFiles: a random-bytes file and an empty file sit at
// the head of spool_dir (named as the oldest blocks), the relay starts while
// its ClickHouse is down and takes load, then ClickHouse comes back. The
// bad files go to spool_dir/rejected/ (their rows counted as rejected), the
// queue behind them drains, and every answered request is stored exactly
// once within seconds of ClickHouse's return (the issue measured 0 of 8
// within 25 s before).
func TestChaosCorruptSpoolFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	outage := 3 * time.Second
	if chaosLong() {
		outage = 10 * time.Second
	}
	ch, url := servicetest.OwnClickHouse(t)
	ch.Kill()
	db := "relay"
	spool := t.TempDir()
	bad := map[string][]byte{
		"00000000000000000001-8-k-" + strings.Repeat("1", 32) + "-" + strings.Repeat("2", 32) + ".native": []byte("\x13\x37\x00\xff random bytes, no Native block \xde\xad\xbe\xef"),
		"00000000000000000002-3-k-" + strings.Repeat("3", 32) + "-" + strings.Repeat("4", 32) + ".native": nil,
	}
	for name, data := range bad {
		if err := os.WriteFile(filepath.Join(spool, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := startRelayWith(t, "", func(c *Config) {
		withClickHouse(url, db)(c)
		c.Storage.SpoolDir = spool
		c.Storage.ClickHouse.FlushInterval = 100 * time.Millisecond
		c.Storage.ClickHouse.BatchRows = 50
	})
	hdr := map[string]string{mockllm.HeaderChunks: "5", mockllm.HeaderDelayMs: "2"}
	l := startLoad(t, r, 4, 100000, 5*time.Millisecond, hdr)
	time.Sleep(outage)
	ch.Start()
	back := time.Now()
	time.Sleep(time.Second)
	l.finish()
	answered := l.answered.Load()

	// Every request answered so far must reach ClickHouse within seconds.
	var stored map[string]int
	var missing, dup int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		rows, err := servicetest.TryQuery(url, db, "SELECT request_id FROM stream_logs")
		if err == nil {
			stored = map[string]int{}
			for _, row := range rows {
				stored[row["request_id"].(string)]++
			}
			if missing, dup = exactlyOnce(l.ids, stored); missing == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(back)
	st := r.app.store.Stats()
	r.stop(t)

	var rejected []string
	ents, _ := os.ReadDir(filepath.Join(spool, "rejected"))
	for _, e := range ents {
		rejected = append(rejected, e.Name())
	}
	res := chaosResult{scenario: fmt.Sprintf("spool/corrupt-head-clickhouse-down-%s", outage), sent: l.sent.Load(), answered: answered,
		expected: st.RowsRejected, unexpect: l.fivexx.Load() + l.other.Load() + missing + dup, stored: int64(len(stored)),
		spooled: st.RowsSpooled, dropped: st.RowsDropped}
	t.Logf("ClickHouse back: %d answered requests stored in %v (%d missing, %d twice); %d rows spooled, %d rejected (files %v), stats %+v",
		answered, took.Round(10*time.Millisecond), missing, dup, st.RowsSpooled, st.RowsRejected, rejected, st)
	switch {
	case res.unexpect != 0 || st.RowsDropped != 0 || int64(len(stored)) != answered:
		t.Errorf("corrupt spool head: %+v; missing %d, duplicated %d", res, missing, dup)
	case st.RowsSpooled == 0:
		t.Errorf("nothing was spooled while ClickHouse was down: %+v", st)
	case st.RowsRejected != 8+3 || len(rejected) != 4:
		t.Errorf("rejected rows %d, rejected/ holds %v; want 11 rows and the two files with their reasons", st.RowsRejected, rejected)
		res.unexpect++
	}
	for name := range bad {
		if _, err := os.Stat(filepath.Join(spool, name)); err == nil {
			t.Errorf("%s is still at the head of the spool", name)
		}
	}
	res.emit(t)
}
