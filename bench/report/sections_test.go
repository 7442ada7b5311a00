package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeJSON(t *testing.T, dir, name string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// runReport writes meta.txt and runs the report over dir, returning
// REPORT.md.
func runReport(t *testing.T, dir, meta string) string {
	t.Helper()
	return runReportTo(t, dir, t.TempDir(), meta)
}

// runReportTo is runReport writing into out (where profiles/ may wait).
func runReportTo(t *testing.T, dir, out, meta string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "meta.txt"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"-in", dir, "-out", out}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "REPORT.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// loadgen is a closed-loop loadgen result with a proxy's CPU per stream.
func loadgen(label, path string, rps float64, proc string, cpu float64) Result {
	r := Result{Label: label, Path: path, Mode: "closed", Conns: 64, Chunks: 20, WindowS: 4, Requests: int64(rps * 4), OK: int64(rps * 4), RPS: rps,
		CPUPerReq: map[string]float64{"mock": 200, "loadgen": 50}, UserPerReq: map[string]float64{"mock": 150, "loadgen": 30}}
	if proc != "" {
		r.CPUPerReq[proc] = cpu
		r.UserPerReq[proc] = cpu / 4 // a quarter in user space
	}
	return r
}

// headlineRow returns the headline table's row starting with prefix.
func headlineRow(t *testing.T, md, prefix string) []string {
	t.Helper()
	head, _, _ := strings.Cut(md, "## 1.")
	for _, l := range strings.Split(head, "\n") {
		if strings.HasPrefix(l, "| "+prefix) {
			cells := strings.Split(strings.Trim(l, "| "), " | ")
			return cells
		}
	}
	t.Fatalf("no headline row %q in:\n%s", prefix, head)
	return nil
}

func TestHeadlineProductionShape(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, dir, "s1_direct_r1.json", loadgen("s1", "direct", 6000, "", 0))
	writeJSON(t, dir, "s1_nginx_r1.json", loadgen("s1", "nginx", 5000, "nginx", 100))
	writeJSON(t, dir, "s1_relay_r1.json", loadgen("s1", "relay", 5500, "relay", 110))
	writeJSON(t, dir, "s4_nginx_r1.json", loadgen("s4", "nginx", 4800, "nginx", 104))
	writeJSON(t, dir, "s4_relay-base_r1.json", loadgen("s4", "relay-base", 5280, "relay", 109.2))
	writeJSON(t, dir, "s4_relay-chredis_r1.json", loadgen("s4", "relay-chredis", 3600, "relay", 156))
	md := runReport(t, dir, "quick=0\ns6_status=not run: bench/chinsert is not in this tree\n")

	if !strings.Contains(md, "| scenario | direct | nginx | relay | relay / nginx | production shape | production / nginx |") {
		t.Fatalf("headline has no production-shape column:\n%s", md)
	}
	row := headlineRow(t, md, "1 throughput")
	if row[3] != "5500" || row[4] != "1.10" || row[5] != "3600 (s4; nginx 4800)" || row[6] != "0.75" {
		t.Errorf("throughput row = %q", row)
	}
	row = headlineRow(t, md, "1 proxy CPU per stream")
	if row[5] != "156 (s4; nginx 104)" || row[6] != "1.50" {
		t.Errorf("CPU row = %q", row)
	}
	row = headlineRow(t, md, "1 of which in user space")
	if row[2] != "25.0" || row[3] != "27.5" || row[4] != "1.10" || row[5] != "39.0 (s4; nginx 26.0)" || row[6] != "1.50" {
		t.Errorf("user-space CPU row = %q", row)
	}
	row = headlineRow(t, md, "4 proxy CPU per stream, same rounds")
	if row[2] != "104" || row[3] != "109" || row[4] != "1.05" || row[5] != "**156**" || row[6] != "**1.50**" {
		t.Errorf("s4 CPU row = %q", row)
	}
	row = headlineRow(t, md, "4 same load")
	if row[6] != "**0.75**" {
		t.Errorf("s4 throughput row = %q", row)
	}
	if !strings.Contains(md, "Not run: bench/chinsert is not in this tree.") {
		t.Errorf("scenario 6 does not say why it did not run")
	}
	row = headlineRow(t, md, "6 rows/s into ClickHouse")
	if row[3] != "not run: bench/chinsert is not in this tree" {
		t.Errorf("scenario 6 headline row = %q", row)
	}
}

func TestHeadlineWithoutProductionShape(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, dir, "s1_direct_r1.json", loadgen("s1", "direct", 6000, "", 0))
	writeJSON(t, dir, "s1_nginx_r1.json", loadgen("s1", "nginx", 5000, "nginx", 100))
	writeJSON(t, dir, "s1_relay_r1.json", loadgen("s1", "relay", 5500, "relay", 110))
	md := runReport(t, dir, "quick=1\n")
	row := headlineRow(t, md, "1 throughput")
	if row[5] != "–" || row[6] != "–" {
		t.Errorf("throughput row without scenario 4 = %q", row)
	}
	if !strings.Contains(md, "## 6. Rows into ClickHouse") || !strings.Contains(md, "Not run (quick mode).") {
		t.Errorf("scenario 6 in quick mode:\n%s", md)
	}
}

// chInsertFixture is bench/chinsert's output schema with made-up numbers.
const chInsertFixture = `{"rows": 200000, "row_bytes": 6656.4, "block_rows": 10000, "rounds": 3,
 "writer_rows_per_s": [10500, 11200, 9800], "client_rows_per_s": [12000, 11800, 12500],
 "http_rows_per_s": [11900, 12100, 11700], "writer_median": 10500, "client_median": 12000,
 "http_median": 11900, "ratio_writer_client": 0.875, "server_cpu_us_per_row": 61.2,
 "notes": "the server spent most of its time compressing."}`

func TestChInsertSection(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, dir, "s1_direct_r1.json", loadgen("s1", "direct", 6000, "", 0))
	if err := os.WriteFile(filepath.Join(dir, chInsertFile), []byte(chInsertFixture), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := os.MkdirAll(filepath.Join(out, "profiles"), 0o755); err != nil {
		t.Fatal(err)
	}
	top := "      flat  flat%   sum%        cum   cum%\n     200ms 34.48% 34.48%      200ms 34.48%  runtime.memmove\n"
	if err := os.WriteFile(filepath.Join(out, "profiles", "chinsert.writer.cpu.top.txt"), []byte(top), 0o644); err != nil {
		t.Fatal(err)
	}
	md := runReportTo(t, dir, out, "quick=0\ns6_status=ok\n")
	_, s6, ok := strings.Cut(md, "## 6. Rows into ClickHouse")
	if !ok {
		t.Fatalf("no scenario 6:\n%s", md)
	}
	s6, _, _ = strings.Cut(s6, "## 7.")
	wantAll(t, "scenario 6", s6,
		"200000 rows per method and round (6656 bytes each in Native form, blocks of 10000 rows)",
		"| relay writer (chlog) | **10500** | 10500, 11200, 9800 | 0.88 |",
		"| clickhouse-client, FORMAT Native | **12000** | 12000, 11800, 12500 | 1.00 |",
		"| plain HTTP POST, FORMAT Native | **11900** | 11900, 12100, 11700 | 0.99 |",
		"ClickHouse server CPU per row during the writer's runs: 61.2 µs",
		"Notes from bench/chinsert: the server spent most of its time compressing.",
		"200ms 34.48% 34.48%      200ms 34.48%  runtime.memmove",
	)
	row := headlineRow(t, md, "6 rows/s into ClickHouse")
	if row[3] != "10500 vs 12000" || row[4] != "0.88" {
		t.Errorf("scenario 6 headline row = %q", row)
	}
}

func rateRun(path string, p99, cpu float64, success float64) RateRun {
	proc := procName(path)
	mk := func(name string, f float64) RateTarget {
		t := RateTarget{Name: name, URL: "http://127.0.0.1:1/v1/chat/completions", Requests: 5000, SentRate: 1000, Throughput: 1000 * success, Success: success,
			StatusCodes: map[string]int{"200": int(5000 * success)}, Latency: RateLatency{P50Ms: f * p99 / 3, P90Ms: f * p99 / 2, P99Ms: f * p99, MaxMs: f * p99 * 4},
			CPUPerReq: map[string]float64{"mock": 130, "vegeta": 260}}
		if success < 1 {
			t.StatusCodes["502"] = 5000 - t.StatusCodes["200"]
		}
		if path != "direct" {
			t.CPUPerReq[proc] = f * cpu
		}
		return t
	}
	return RateRun{Path: path, Rate: 1000, DurationS: 5, WarmupS: 1,
		Targets: []RateTarget{mk("POST /v1/chat/completions", 1), mk("POST /v1/chat/completions stream", 2)}}
}

func TestRateSection(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, dir, "s1_direct_r1.json", loadgen("s1", "direct", 6000, "", 0))
	writeJSON(t, dir, "rate_direct_r1.json", rateRun("direct", 0.5, 0, 1))
	writeJSON(t, dir, "rate_nginx_r1.json", rateRun("nginx", 0.8, 100, 1))
	writeJSON(t, dir, "rate_relay_r1.json", rateRun("relay", 0.9, 150, 1))
	writeJSON(t, dir, "rate_relay-chredis_r1.json", rateRun("relay-chredis", 1.2, 200, 0.99))
	// A stalled round and a fast one around the median round of the relay.
	writeJSON(t, dir, "rate_relay_r2.json", rateRun("relay", 90, 900, 1))
	writeJSON(t, dir, "rate_relay_r3.json", rateRun("relay", 0.7, 140, 1))
	md := runReport(t, dir, "quick=1\n")

	_, s7, ok := strings.Cut(md, "## 7. Plain request rate (vegeta)")
	if !ok {
		t.Fatalf("no scenario 7:\n%s", md)
	}
	s7, _, _ = strings.Cut(s7, "## Where")
	wantAll(t, "scenario 7", s7,
		"at **1000 requests/s** per target",
		"in 3 round(s)",
		"| POST /v1/chat/completions | relay | 1000 | 1000 | yes | 100.00 | 0.30 | 0.45 | 0.90 | 3.60 | 150 | 130 | 260 | 0 | 0.90, 90.00, 0.70 |",
		"| POST /v1/chat/completions stream | nginx | 1000 | 1000 | yes | 100.00 | 0.53 | 0.80 | 1.60 | 6.40 | 200 | 130 | 260 | 0 |",
		"| POST /v1/chat/completions | relay-chredis | 1000 | 990 | **no** | 99.00 |",
		"status 502: 50",
	)
	row := headlineRow(t, md, "7 POST /v1/chat/completions at 1000 requests/s")
	if row[1] != "0.50" || row[2] != "0.80" || row[3] != "0.90" || row[4] != "1.12" || row[5] != "1.20" || row[6] != "1.50" {
		t.Errorf("scenario 7 latency row = %q", row)
	}
	row = headlineRow(t, md, "7 POST /v1/chat/completions: proxy CPU")
	if row[2] != "100" || row[3] != "150" || row[4] != "1.50" || row[5] != "200" || row[6] != "2.00" {
		t.Errorf("scenario 7 CPU row = %q", row)
	}
	if !strings.Contains(md, "scenario 7 relay-chredis POST /v1/chat/completions round 1: 1000 of 1000 requests/s sent, 99.00% success") {
		t.Errorf("no warning for the failed requests")
	}
}

func TestReadResultsSkipsOtherPrograms(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, dir, "s1_relay_r1.json", loadgen("s1", "relay", 5500, "relay", 110))
	writeJSON(t, dir, "rate_relay_r1.json", rateRun("relay", 1, 150, 1))
	if err := os.WriteFile(filepath.Join(dir, chInsertFile), []byte(chInsertFixture), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err := readResults(dir)
	if err != nil || len(rs) != 1 || rs[0].Label != "s1" {
		t.Errorf("readResults = %d results, %v", len(rs), err)
	}
	rates, err := readRates(dir)
	if err != nil || len(rates["relay"]) != 1 || len(rates["relay"][0].Targets) != 2 {
		t.Errorf("readRates = %v, %v", rates, err)
	}
}

// TestScenario2PairedMedian: the added latency is the median over rounds
// of each round's difference to direct, not the difference of one round.
func TestScenario2PairedMedian(t *testing.T) {
	dir := t.TempDir()
	s2 := func(path string, p999 float64) Result {
		r := Result{Label: "s2", Path: path, Mode: "open", Conns: 512, Chunks: 20, DelayMs: 5, Rate: 500, WindowS: 10, Requests: 5000, OK: 5000, RPS: 500}
		r.FirstEvent.P50Ms, r.FirstEvent.P99Ms, r.FirstEvent.P999Ms = 1, 2, p999
		return r
	}
	// direct's p99.9 jumps in round 2; the relay follows it: paired
	// differences 1, 1, 9 (median 1), while one round alone may say 9.
	for i, v := range [][3]float64{{3, 4, 4}, {20, 21, 21}, {4, 5, 13}} {
		round := "_r" + string(rune('1'+i)) + ".json"
		writeJSON(t, dir, "s2_direct"+round, s2("direct", v[0]))
		writeJSON(t, dir, "s2_nginx"+round, s2("nginx", v[1]))
		writeJSON(t, dir, "s2_relay"+round, s2("relay", v[2]))
	}
	md := runReport(t, dir, "quick=0\ns2_rate=500\n")
	row := headlineRow(t, md, "2 TTFT p99.9")
	if row[2] != "+1.00" || row[3] != "+1.00" || row[5] != "–" {
		t.Fatalf("p99.9 row = %q; want nginx +1.00, relay +1.00 (paired medians), no production shape", row)
	}
	if !strings.Contains(md, "the median over 3 rounds") {
		t.Errorf("scenario 2 does not say how many rounds the medians cover")
	}
}

// TestScenario2NiceVariant: the production shape with ClickHouse yielding
// the cores gets its own rows in scenario 2's tables, paired with direct
// like the others, and its storage counters are listed.
func TestScenario2NiceVariant(t *testing.T) {
	dir := t.TempDir()
	s2 := func(path string, p99 float64) Result {
		r := Result{Label: "s2", Path: path, Mode: "open", Conns: 512, Chunks: 20, DelayMs: 5, Rate: 500, WindowS: 10, Requests: 5000, OK: 5000, RPS: 500}
		r.FirstEvent.P50Ms, r.FirstEvent.P99Ms, r.FirstEvent.P999Ms = 1, p99, p99+1
		return r
	}
	for i, v := range [][5]float64{{2, 3, 3, 5, 4}, {2, 3, 3, 6, 4.5}} {
		round := "_r" + string(rune('1'+i)) + ".json"
		for j, path := range []string{"direct", "nginx", "relay", "relay-chredis", "relay-chredis-nice"} {
			writeJSON(t, dir, "s2_"+path+round, s2(path, v[j]))
		}
	}
	md := runReport(t, dir, "quick=0\ns2_rate=500\ns2_storage_relay-chredis-nice_r1=insert_rows=9000 rows_spooled=0 \ns2_storage_relay-chredis-nice_r2=insert_rows=18000 rows_spooled=0 \n")
	_, s2md, _ := strings.Cut(md, "## 2.")
	s2md, _, _ = strings.Cut(s2md, "\n## ")
	wantAll(t, "scenario 2", s2md,
		"*relay-chredis-nice* is the same relay with the ClickHouse server's threads at nice 19",
		"| relay-chredis-nice | 500 | yes |",
		// p99 added, paired: 2 and 2.5; the median of two rounds is the lower
		"| relay-chredis-nice − direct | +0.00 | +0.00 | +2.00 | +2.00 |",
		"| relay-chredis − direct | +0.00 | +0.00 | +3.00 | +3.00 |",
		"- round 2: insert_rows=18000 rows_spooled=0",
	)
}

// TestScenario3BothCounts: scenario 3 at its largest count and again at
// S3_ALSO's gives a headline row and two table rows per path for each.
func TestScenario3BothCounts(t *testing.T) {
	dir := t.TempDir()
	slow := func(label, path string, open, idleKB, peakKB int64) Result {
		r := Result{Label: label, Path: path, Mode: "closed", Conns: int(open), Chunks: 30, OK: open,
			Procs: []Proc{{Name: path, PeakOpen: open, IdleRSSKB: idleKB, PeakRSSKB: peakKB, MaxRSSKB: peakKB}}}
		return r
	}
	writeJSON(t, dir, "s1_direct_r1.json", loadgen("s1", "direct", 6000, "", 0))
	writeJSON(t, dir, "s3_nginx.json", slow("s3", "nginx", 9900, 28000, 28000+9900*18))
	writeJSON(t, dir, "s3_relay.json", slow("s3", "relay", 9900, 15000, 15000+9900*27))
	writeJSON(t, dir, "s3small_nginx.json", slow("s3small", "nginx", 2000, 28000, 28000+2000*17))
	writeJSON(t, dir, "s3small_relay.json", slow("s3small", "relay", 2000, 15000, 15000+2000*25))
	md := runReport(t, dir, "quick=0\ns3_streams=9900\ns3small_streams=2000\n")
	row := headlineRow(t, md, "3 memory per open stream, 9900 slow streams")
	if row[2] != "18.0" || row[3] != "27.0" || row[4] != "1.50" {
		t.Errorf("9900 row = %q", row)
	}
	row = headlineRow(t, md, "3 memory per open stream, 2000 slow streams")
	if row[2] != "17.0" || row[3] != "25.0" || row[4] != "1.47" {
		t.Errorf("2000 row = %q", row)
	}
	_, s3, _ := strings.Cut(md, "## 3. Many slow streams")
	s3, _, _ = strings.Cut(s3, "## 4.")
	wantAll(t, "scenario 3", s3, "| nginx | 9900 |", "| relay | 9900 |", "| nginx | 2000 |", "| relay | 2000 |", "again with 2000 streams")
}

// TestBodyStorageCounters: the relay's storage counters noted after each
// body run appear under scenario 5, per path and round, with the time the
// relay went on storing (run.sh storage_idle) where it was noted.
func TestBodyStorageCounters(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"direct", "nginx", "relay"} {
		writeJSON(t, dir, "s5body_"+p+"_r1.json", loadgen("s5body", p, 900, "", 0))
	}
	md := runReport(t, dir, "quick=0\ns5body_storage_relay_r1=rows_spooled=2700 rows_degraded=300 rows_dropped=0 \ns5body_storage_relay-chredis_r1=insert_rows=2100 rows_degraded=0 \ns5body_idle_ds_relay-chredis_r1=37\n")
	_, s5, _ := strings.Cut(md, "## 5. Large bodies")
	wantAll(t, "scenario 5", s5, "- relay, round 1: rows_spooled=2700 rows_degraded=300 rows_dropped=0\n", "- relay-chredis, round 1: insert_rows=2100 rows_degraded=0; storing them took 3.7 s more\n")
}

// TestBodyNotStored: the body run of the relay with capture meta shows in
// scenario 5's table and the headline, against nginx, and the sentence
// under the table gives what storing the bodies cost the relay per request.
func TestBodyNotStored(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, dir, "s5body_direct_r1.json", loadgen("s5body", "direct", 2000, "", 0))
	writeJSON(t, dir, "s5body_nginx_r1.json", loadgen("s5body", "nginx", 1000, "nginx", 600))
	writeJSON(t, dir, "s5body_relay_r1.json", loadgen("s5body", "relay", 900, "relay", 750))
	writeJSON(t, dir, "s5body_relay-meta_r1.json", loadgen("s5body", "relay-meta", 1100, "relay", 520))
	md := runReport(t, dir, "quick=0\n")
	row := headlineRow(t, md, "5 the same bodies, not stored")
	if got := strings.Join(row[1:5], " | "); got != "– | 1000 | 1100 | 1.10" {
		t.Errorf("headline row = %q, want nginx 1000, relay-meta 1100, ratio 1.10", got)
	}
	_, s5, _ := strings.Cut(md, "## 5. Large bodies")
	wantAll(t, "scenario 5", s5, "| body | relay-meta | **1100** |", "cost the relay 230 µs of CPU per request: 750 with the body captured, 520 with it not stored (relay-meta); 900 vs 1100 requests/s.")
}

// TestServicesCPU: the production shape's ClickHouse and Redis servers,
// watched by run.sh, show in scenario 4's table and the headline, and
// ClickHouse's merge counters in a sentence.
func TestServicesCPU(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, dir, "s4_nginx_r1.json", loadgen("s4", "nginx", 4800, "nginx", 104))
	writeJSON(t, dir, "s4_relay-base_r1.json", loadgen("s4", "relay-base", 5280, "relay", 109.2))
	prod := loadgen("s4", "relay-chredis", 4600, "relay", 120)
	prod.CPUPerReq["clickhouse"] = 15.5
	prod.CPUPerReq["redis"] = 1.5
	writeJSON(t, dir, "s4_relay-chredis_r1.json", prod)
	md := runReport(t, dir, "quick=0\ns4_ch_InsertedRows=1000\ns4_ch_MergedRows=2900\ns4_ch_MergesTimeMilliseconds=120\n")

	row := headlineRow(t, md, "4 ClickHouse and Redis servers' CPU")
	if row[5] != "17.0" {
		t.Errorf("services CPU headline row = %q", row)
	}
	wantAll(t, "scenario 4", md,
		"| chredis | **4600** | 4600 | 0.87 | 0.96 | 120 | 17.0 |",
		"| base | **5280** | 5280 | 1.00 | 1.10 | 109 | – |",
		"1000 rows inserted; its background merges rewrote 2900 rows (2.9 per row inserted) in 120 ms",
	)
}

// TestLimiterPairs: scenario 4's back-to-back pairs of base and redis give
// target 5 the median of the pairs' ratios, pairing the runs by file order.
func TestLimiterPairs(t *testing.T) {
	dir := t.TempDir()
	writeJSON(t, dir, "s4_nginx_r1.json", loadgen("s4", "nginx", 5000, "nginx", 100))
	writeJSON(t, dir, "s4_relay-base_r1.json", loadgen("s4", "relay-base", 5000, "relay", 100))
	// The machine slows after pair 1; the pairs' ratios are 0.98, 0.90,
	// 1.00, 1.02 (median 0.99). Runs paired by throughput instead of by
	// file would give 0.95 to 0.99.
	for i, p := range [][2]float64{{6000, 5900}, {4200, 3780}, {4000, 4000}, {3900, 3978}} {
		suffix := "_p0" + string(rune('1'+i)) + ".json"
		writeJSON(t, dir, "s4pair_relay-base"+suffix, loadgen("s4pair", "relay-base", p[0], "relay", 80))
		writeJSON(t, dir, "s4pair_relay-redis"+suffix, loadgen("s4pair", "relay-redis", p[1], "relay", 84))
	}
	md := runReport(t, dir, "quick=0\ns4pair_secs=3\ns4pair_redis_fallbacks=0\n")
	row := headlineRow(t, md, "4 the same, 4 back-to-back pairs")
	if row[3] != "0.90 to 1.02" || row[4] != "**0.99**" {
		t.Errorf("limiter pairs row = %q; want pairs 0.90 to 1.02, median 0.99", row)
	}
	for _, want := range []string{"4 pairs of 3 s each", "**0.99** (pairs from 0.90 to 1.02)", "base 80.0 µs, redis 84.0 µs", "did not answer in time): 0."} {
		if !strings.Contains(md, want) {
			t.Errorf("scenario 4 does not say %q", want)
		}
	}
}

// wantAll fails t for each of wants that text, a part of the report (what),
// does not contain.
func wantAll(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(text, want) {
			t.Errorf("%s lacks %q:\n%s", what, want, text)
		}
	}
}
