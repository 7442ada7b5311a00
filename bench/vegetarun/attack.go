package main

import (
	"os"
	"sort"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/stream-relay/stream-relay/bench/procstat"
)

// Run is the JSON written for one path: every target's attack.
type Run struct {
	Path      string   `json:"path"`
	Rate      int      `json:"rate"`
	DurationS float64  `json:"duration_s"`
	WarmupS   float64  `json:"warmup_s"`
	Targets   []Target `json:"targets"`
}

// Target is one target's measured attack.
type Target struct {
	Name        string             `json:"name"`
	URL         string             `json:"url"`
	Requests    uint64             `json:"requests"`
	SentRate    float64            `json:"sent_rate"`  // requests sent per second
	Throughput  float64            `json:"throughput"` // successful requests per second, waiting included
	Success     float64            `json:"success"`    // fraction of 2xx/3xx answers
	StatusCodes map[string]int     `json:"status_codes"`
	Errors      []string           `json:"errors"`
	Latency     Latency            `json:"latency"`
	BytesInMean float64            `json:"bytes_in_mean"`
	CPUPerReq   map[string]float64 `json:"cpu_us_per_req"` // watched process groups, µs of CPU per request sent
}

// Latency is vegeta's latency summary in milliseconds.
type Latency struct {
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// attackTarget warms the path up at the rate, then attacks it for the
// measured duration, counting the CPU the watched processes (and this
// process, as "vegeta") spend meanwhile.
func attackTarget(t vegeta.Target, o options, watch []procstat.Group) Target {
	rate := vegeta.Rate{Freq: o.rate, Per: time.Second}
	newAttacker := func() *vegeta.Attacker {
		return vegeta.NewAttacker(vegeta.Timeout(o.timeout), vegeta.KeepAlive(true),
			vegeta.Workers(64), vegeta.Connections(10000), vegeta.Redirects(vegeta.NoFollow))
	}
	targeter := vegeta.NewStaticTargeter(t)
	if o.warmup > 0 {
		for range newAttacker().Attack(targeter, rate, o.warmup, "warmup") {
		}
	}
	watch = append(watch, procstat.Group{Name: "vegeta", PIDs: []int{os.Getpid()}})
	before := readTicks(watch)
	var m vegeta.Metrics
	for r := range newAttacker().Attack(targeter, rate, o.dur, "measured") {
		m.Add(r)
	}
	m.Close()
	after := readTicks(watch)

	out := Target{
		Name: targetName(t), URL: t.URL, Requests: m.Requests, SentRate: m.Rate, Throughput: m.Throughput,
		Success: m.Success, StatusCodes: m.StatusCodes, Errors: firstErrors(m.Errors, 5),
		Latency: Latency{MeanMs: ms(m.Latencies.Mean), P50Ms: ms(m.Latencies.P50), P90Ms: ms(m.Latencies.P90),
			P99Ms: ms(m.Latencies.P99), MaxMs: ms(m.Latencies.Max)},
		BytesInMean: m.BytesIn.Mean,
		CPUPerReq:   map[string]float64{},
	}
	if m.Requests > 0 {
		for name, a := range after {
			if b, ok := before[name]; ok {
				out.CPUPerReq[name] = float64(a-b) * (1e6 / procstat.ClkTck) / float64(m.Requests)
			}
		}
	}
	return out
}

// firstErrors keeps a few of vegeta's distinct error strings, sorted.
func firstErrors(es []string, n int) []string {
	es = append([]string{}, es...)
	sort.Strings(es)
	if len(es) > n {
		es = es[:n]
	}
	return es
}
