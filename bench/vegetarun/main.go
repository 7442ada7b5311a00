// Command vegetarun drives a plain request-rate scenario with vegeta's
// library (github.com/tsenart/vegeta/v12): each target of a vegeta targets
// file is attacked in turn at a fixed rate, after a warm-up at that rate, and
// the run's metrics (rate held, success, latency quantiles, throughput, CPU
// per request of watched processes) are written as JSON for bench/report.
//
//	vegetarun -targets bench/vegeta/targets.http -base http://127.0.0.1:19180 \
//	  -path relay -rate 500 -d 5s -watch relay=123,mock=456 -json out.json
//
// Body files (@path lines) are read relative to -root, the repository root.
// Vegeta reads every response whole, streamed or not: it measures requests
// per second and whole-request latency, not time to first token.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/stream-relay/stream-relay/bench/procstat"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vegetarun:", err)
		os.Exit(1)
	}
}

// options are the command line of one run.
type options struct {
	targets string
	root    string
	base    string
	auth    string
	path    string
	rate    int
	dur     time.Duration
	warmup  time.Duration
	timeout time.Duration
	watch   string
	out     string
}

func parse(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("vegetarun", flag.ContinueOnError)
	fs.StringVar(&o.targets, "targets", "bench/vegeta/targets.http", "vegeta targets file (http format)")
	fs.StringVar(&o.root, "root", ".", "directory the targets' @body paths are relative to")
	fs.StringVar(&o.base, "base", "", "scheme://host:port replacing each target's own (empty: as written)")
	fs.StringVar(&o.auth, "auth", "", "Authorization header replacing each target's (empty: as written)")
	fs.StringVar(&o.path, "path", "relay", "name of the path under test, for the report")
	fs.IntVar(&o.rate, "rate", 500, "requests per second, per target")
	fs.DurationVar(&o.dur, "d", 5*time.Second, "measured attack per target")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured attack at the same rate before each target")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.StringVar(&o.watch, "watch", "", "processes whose CPU to count: name=pid[+pid...],...")
	fs.StringVar(&o.out, "json", "", "write the results here (default stdout)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.rate <= 0 || o.dur <= 0 {
		return o, fmt.Errorf("-rate and -d must be positive")
	}
	return o, nil
}

func run(args []string) error {
	o, err := parse(args)
	if err != nil {
		return err
	}
	watch, err := procstat.ParseWatch(o.watch)
	if err != nil {
		return err
	}
	tgts, err := loadTargets(o.targets, o.root, o.base, o.auth)
	if err != nil {
		return err
	}
	res := Run{Path: o.path, Rate: o.rate, DurationS: o.dur.Seconds(), WarmupS: o.warmup.Seconds()}
	for _, t := range tgts {
		tr := attackTarget(t, o, watch)
		fmt.Fprintf(os.Stderr, "%s %s: %.0f/s sent, %.0f/s ok, success %.2f%%, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
			o.path, tr.Name, tr.SentRate, tr.Throughput, 100*tr.Success, tr.Latency.P50Ms, tr.Latency.P99Ms, tr.Latency.MaxMs)
		res.Targets = append(res.Targets, tr)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if o.out == "" {
		_, err = os.Stdout.Write(append(b, '\n'))
		return err
	}
	return os.WriteFile(o.out, append(b, '\n'), 0o644)
}
