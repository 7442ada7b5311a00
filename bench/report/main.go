// Command report turns the raw results of bench/run.sh into REPORT.md and a
// chart of latency quantiles per path (latency.svg):
//
//	report -in bench/results/raw -out bench/results
//
// It also answers two questions the script asks between runs, by exit
// status: -sustained FILE (did an open-loop run keep its rate?) and
// -complete FILE (did every stream of a run finish?).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	in := fs.String("in", "bench/results/raw", "raw results: loadgen JSON files and meta.txt")
	out := fs.String("out", "bench/results", "where REPORT.md and latency.svg go")
	sustained := fs.String("sustained", "", "exit 0 if this open-loop result kept its rate")
	complete := fs.String("complete", "", "exit 0 if every stream of this result finished")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *sustained != "":
		r, err := readResult(*sustained)
		if err != nil {
			return err
		}
		if !r.sustained() {
			os.Exit(3)
		}
		return nil
	case *complete != "":
		r, err := readResult(*complete)
		if err != nil {
			return err
		}
		if r.Errors > 0 || r.OK < int64(r.Conns) {
			os.Exit(3)
		}
		return nil
	}
	rs, err := readResults(*in)
	if err != nil {
		return err
	}
	meta, err := readMeta(filepath.Join(*in, "meta.txt"))
	if err != nil {
		return err
	}
	rates, err := readRates(*in)
	if err != nil {
		return err
	}
	ch, err := readChInsert(filepath.Join(*in, chInsertFile))
	if err != nil {
		return err
	}
	rep := &report{dir: *out, meta: meta, rs: rs, rates: rates, chinsert: ch}
	svg := rep.chart()
	if svg != "" {
		if err := os.WriteFile(filepath.Join(*out, "latency.svg"), []byte(svg), 0o644); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(*out, "REPORT.md"), []byte(rep.markdown(svg != "")), 0o644)
}

// Result mirrors the loadgen's JSON output.
type Result struct {
	Label      string             `json:"label"`
	Path       string             `json:"path"`
	Mode       string             `json:"mode"`
	Conns      int                `json:"conns"`
	Rate       float64            `json:"rate"`
	Chunks     int                `json:"chunks"`
	DelayMs    float64            `json:"delay_ms"`
	ChunkBytes int                `json:"chunk_bytes"`
	BodyBytes  int                `json:"body_bytes"`
	WindowS    float64            `json:"window_s"`
	Requests   int64              `json:"requests"`
	OK         int64              `json:"ok"`
	Errors     int64              `json:"errors"`
	ErrorKinds map[string]int64   `json:"error_kinds"`
	Unsent     int64              `json:"unsent"`
	RPS        float64            `json:"rps"`
	MBps       float64            `json:"mb_per_s"`
	PeakOpen   int64              `json:"peak_open"`
	TTFB       Summary            `json:"ttfb"`
	FirstEvent Summary            `json:"first_event"`
	Gap        Summary            `json:"gap"`
	Total      Summary            `json:"total"`
	SendLag    Summary            `json:"send_lag"`
	Procs      []Proc             `json:"procs"`
	CPUPerReq  map[string]float64 `json:"cpu_us_per_req"`
	UserPerReq map[string]float64 `json:"user_cpu_us_per_req"` // the user-space part of CPUPerReq
	file       string
}

// Summary is one latency distribution in milliseconds.
type Summary struct {
	Count  uint64  `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Proc is one watched process group.
type Proc struct {
	Name       string  `json:"name"`
	IdleRSSKB  int64   `json:"idle_rss_kb"`
	MaxRSSKB   int64   `json:"max_rss_kb"`
	PeakRSSKB  int64   `json:"peak_rss_kb"`
	PeakOpen   int64   `json:"peak_open"`
	CPUSeconds float64 `json:"cpu_s"`
	CPUPercent float64 `json:"cpu_pct"`
	PlateauCPU float64 `json:"plateau_cpu_pct"`
	Switches   int64   `json:"ctx_switches"`
}

func (r *Result) proc(name string) (Proc, bool) {
	for _, p := range r.Procs {
		if p.Name == name {
			return p, true
		}
	}
	return Proc{}, false
}

// sustained: the open loop finished at least 95% of its rate, with nothing
// unsent or failed, and the load generator still sent 99% of the requests
// within 5 ms of their time: past that the machine is saturated, and every
// latency measured is mostly queueing for a core.
func (r *Result) sustained() bool {
	return r.Rate > 0 && r.RPS >= 0.95*r.Rate && r.Unsent == 0 && r.Errors == 0 && r.SendLag.P99Ms < 5
}

func readResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &Result{file: filepath.Base(path)}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// readResults reads the loadgen's results: every JSON file of dir but the
// vegeta runs (rate_*.json) and bench/chinsert's (chinsert.json).
func readResults(dir string) ([]*Result, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var rs []*Result
	for _, f := range files {
		if b := filepath.Base(f); strings.HasPrefix(b, ratePrefix) || b == chInsertFile {
			continue
		}
		r, err := readResult(f)
		if err != nil {
			return nil, err
		}
		rs = append(rs, r)
	}
	if len(rs) == 0 {
		return nil, errors.New(dir + ": no results")
	}
	return rs, nil
}

func readMeta(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m, nil
}
