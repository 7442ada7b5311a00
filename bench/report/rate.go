package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ratePrefix names the files bench/vegetarun writes: rate_<path>.json.
const ratePrefix = "rate_"

// RateRun mirrors bench/vegetarun's JSON: one path, every target at a fixed
// rate.
type RateRun struct {
	Path      string       `json:"path"`
	Rate      int          `json:"rate"`
	DurationS float64      `json:"duration_s"`
	WarmupS   float64      `json:"warmup_s"`
	Targets   []RateTarget `json:"targets"`
}

// RateTarget is one target's attack.
type RateTarget struct {
	Name        string             `json:"name"`
	URL         string             `json:"url"`
	Requests    uint64             `json:"requests"`
	SentRate    float64            `json:"sent_rate"`
	Throughput  float64            `json:"throughput"`
	Success     float64            `json:"success"`
	StatusCodes map[string]int     `json:"status_codes"`
	Errors      []string           `json:"errors"`
	Latency     RateLatency        `json:"latency"`
	BytesInMean float64            `json:"bytes_in_mean"`
	CPUPerReq   map[string]float64 `json:"cpu_us_per_req"`
}

// RateLatency is vegeta's latency summary, in milliseconds.
type RateLatency struct {
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// held: the attack sent at least 95% of its rate and every answer was a
// success.
func (t RateTarget) held(rate int) bool {
	return t.Requests > 0 && t.SentRate >= 0.95*float64(rate) && t.Success >= 1
}

// ratePaths is the order the paths are shown in.
var ratePaths = []string{"direct", "nginx", "relay", "relay-chredis"}

// readRates reads vegetarun's files (rate_<path>_r<round>.json), the
// rounds of each path in file order.
func readRates(dir string) (map[string][]*RateRun, error) {
	files, err := filepath.Glob(filepath.Join(dir, ratePrefix+"*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	m := map[string][]*RateRun{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		r := &RateRun{}
		if err := json.Unmarshal(b, r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		m[r.Path] = append(m[r.Path], r)
	}
	return m, nil
}

// rateRounds returns a path's target in every round, in round order.
func (rp *report) rateRounds(path, name string) []RateTarget {
	var ts []RateTarget
	for _, r := range rp.rates[path] {
		for _, t := range r.Targets {
			if t.Name == name {
				ts = append(ts, t)
			}
		}
	}
	return ts
}

// rateTarget is a path's target in its median round by latency p99 (the
// lower middle of an even count): one stalled round does not decide it.
func (rp *report) rateTarget(path, name string) (RateTarget, bool) {
	ts := rp.rateRounds(path, name)
	if len(ts) == 0 {
		return RateTarget{}, false
	}
	sort.SliceStable(ts, func(i, j int) bool { return ts[i].Latency.P99Ms < ts[j].Latency.P99Ms })
	return ts[(len(ts)-1)/2], true
}

// rateOf is the rate a path was attacked at.
func (rp *report) rateOf(path string) int {
	if rs := rp.rates[path]; len(rs) > 0 {
		return rs[0].Rate
	}
	return 0
}

// rateNames lists the targets in the order the runs attacked them.
func (rp *report) rateNames() []string {
	var names []string
	seen := map[string]bool{}
	for _, p := range ratePaths {
		for _, r := range rp.rates[p] {
			for _, t := range r.Targets {
				if !seen[t.Name] {
					seen[t.Name] = true
					names = append(names, t.Name)
				}
			}
		}
	}
	return names
}

func (rp *report) scenario7() {
	rp.p("## 7. Plain request rate (vegeta)\n\n")
	if len(rp.rates) == 0 {
		rp.p("Not run.\n\n")
		return
	}
	var first *RateRun
	for _, p := range ratePaths {
		if rs := rp.rates[p]; len(rs) > 0 {
			first = rs[0]
			break
		}
	}
	if first == nil {
		rp.p("Not run.\n\n")
		return
	}
	rp.p("`bench/vegetarun` drives vegeta's library (`github.com/tsenart/vegeta/v12`: `NewAttacker`, a static targeter, a constant `Rate`, `Metrics`) at **%d requests/s** per target, each target of `bench/vegeta/targets.http` in turn for %.0f s after %.0f s of warm-up at the same rate, path after path, in %d round(s); each row is the round with the median latency p99 (all rounds' p99 in the last column). ", first.Rate, first.DurationS, first.WarmupS, len(rp.rates["relay"]))
	rp.p("Vegeta's workers read each answer whole, so latency is the whole request (the streamed target's 20 chunks included), measured from when a worker sent it, and throughput counts successful answers per second. ")
	rp.p("CPU is user+system time of the process groups over the measured attack, per request sent; `vegeta` is the load generator itself. ")
	rp.p("*relay-chredis* is the production shape (full capture into ClickHouse, every request decided through Redis), as in scenario 4. Rate held = at least 95%% of the rate sent and every answer a success.\n\n")
	var rows [][]string
	for _, name := range rp.rateNames() {
		for _, p := range ratePaths {
			t, ok := rp.rateTarget(p, name)
			if !ok {
				continue
			}
			held := "yes"
			if !t.held(rp.rateOf(p)) {
				held = "**no**"
			}
			var p99s []string
			for _, x := range rp.rateRounds(p, name) {
				p99s = append(p99s, msf(x.Latency.P99Ms))
			}
			proxy := "–"
			if p != "direct" {
				proxy = cpuOf(t.CPUPerReq, procName(p))
			}
			rows = append(rows, []string{name, p, num(t.SentRate), num(t.Throughput), held, strconvPct(t.Success),
				msf(t.Latency.P50Ms), msf(t.Latency.P90Ms), msf(t.Latency.P99Ms), msf(t.Latency.MaxMs),
				proxy, cpuOf(t.CPUPerReq, "mock"), cpuOf(t.CPUPerReq, "vegeta"), rateErrors(t), strings.Join(p99s, ", ")})
		}
	}
	rp.table([]string{"target", "path", "sent/s", "ok/s", "rate held", "success %", "latency p50 ms", "p90", "p99", "max", "proxy CPU µs/request", "mock CPU µs/request", "vegeta CPU µs/request", "errors", "p99 of each round"}, rows)
	if len(rp.rates["relay-chredis"]) == 0 {
		rp.p("The production shape was not measured here (Redis or ClickHouse not reachable).\n\n")
	}
}

func strconvPct(f float64) string { return fmt.Sprintf("%.2f", 100*f) }

func cpuOf(m map[string]float64, name string) string {
	v, ok := m[name]
	if !ok {
		return "–"
	}
	return num(v)
}

// rateErrors lists the non-2xx status codes and vegeta's distinct errors.
func rateErrors(t RateTarget) string {
	var ks []string
	for code, n := range t.StatusCodes {
		if !strings.HasPrefix(code, "2") {
			ks = append(ks, fmt.Sprintf("status %s: %d", code, n))
		}
	}
	sort.Strings(ks)
	for _, e := range t.Errors {
		ks = append(ks, strings.ReplaceAll(e, "|", "/"))
	}
	if len(ks) == 0 {
		return "0"
	}
	return strings.Join(ks, "; ")
}

// procName is the watched process group of a path: every relay variant is
// watched as "relay".
func procName(path string) string {
	if strings.HasPrefix(path, "relay") {
		return "relay"
	}
	return path
}
