package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestRun runs every method with tiny counts against the real ClickHouse
// and its clickhouse-client: each run must store exactly its rows (run
// checks count() after each), and the result must carry a rate per round
// for every method in the JSON the report reads.
func TestRun(t *testing.T) {
	url := servicetest.ClickHouse(t)
	if _, err := exec.LookPath("clickhouse-client"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("clickhouse-client is required in CI: %v (deployments/local/services.sh installs it)", err)
		}
		t.Skipf("SKIPPED: clickhouse-client not installed: %v", err)
	}
	c := &config{url: url, tcpHost: "127.0.0.1", clientPath: "clickhouse-client", rows: 60, rounds: 2, blockRows: 25}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := run(ctx, c, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string][]float64{"writer": res.WriterRowsPerS, "client": res.ClientRowsPerS, "http": res.HTTPRowsPerS} {
		if len(v) != 2 {
			t.Errorf("%s: %d rates; want one per round (2)", name, len(v))
		}
		for _, x := range v {
			if !(x > 0) {
				t.Errorf("%s: rate %v", name, x)
			}
		}
	}
	if res.Rows != 60 || res.BlockRows != 25 || res.Rounds != 2 || res.RowBytes < 4<<10 || res.RatioWriterClient <= 0 {
		t.Errorf("result %+v", res)
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"rows", "row_bytes", "block_rows", "rounds", "writer_rows_per_s", "client_rows_per_s", "http_rows_per_s",
		"writer_median", "client_median", "http_median", "ratio_writer_client", "server_cpu_us_per_row", "notes"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	// The private database is dropped at the end.
	s, err := newServer(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	left, err := s.query(ctx, "SELECT count() FROM system.databases WHERE name LIKE 'chinsert_"+strconv.Itoa(os.Getpid())+"_%'")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(left) != "0" {
		t.Errorf("%s chinsert databases left behind", left)
	}
}

// TestMakeRows: rows are ~6.5 KiB of Native bytes with 20 chunks each and
// distinct ids.
func TestMakeRows(t *testing.T) {
	rows := makeRows(200, 1)
	seen := map[string]bool{}
	for _, r := range rows {
		if r.Chunks.Len() != 20 || !r.Capture || len(r.RequestBody) < 1024 {
			t.Fatalf("row: %d chunks, capture %v, body %d", r.Chunks.Len(), r.Capture, len(r.RequestBody))
		}
		seen[string(r.ID[:])] = true
	}
	if len(seen) != len(rows) {
		t.Fatalf("%d distinct ids in %d rows", len(seen), len(rows))
	}
}

// TestMedian: odd and even counts.
func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median = %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Errorf("median = %v", m)
	}
	if m := median(nil); m != 0 {
		t.Errorf("median(nil) = %v", m)
	}
}
