package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"time"
)

// Result is one run, as the report reads it.
type Result struct {
	Label       string             `json:"label"`
	Path        string             `json:"path"`
	URL         string             `json:"url"`
	Mode        string             `json:"mode"`
	Conns       int                `json:"conns"`
	Rate        float64            `json:"rate"` // 0: closed loop
	Chunks      int                `json:"chunks"`
	DelayMs     float64            `json:"delay_ms"`
	ChunkBytes  int                `json:"chunk_bytes"`
	BodyBytes   int                `json:"body_bytes"`
	WindowS     float64            `json:"window_s"`
	Requests    int64              `json:"requests"` // started in the window
	OK          int64              `json:"ok"`
	Errors      int64              `json:"errors"`
	ErrorKinds  map[string]int64   `json:"error_kinds,omitempty"`
	Unsent      int64              `json:"unsent"` // open loop: never sent (backlog past the grace period)
	RPS         float64            `json:"rps"`    // successful requests finished within the window, per second
	MBps        float64            `json:"mb_per_s"`
	PeakOpen    int64              `json:"peak_open"`
	TTFB        Summary            `json:"ttfb"`
	FirstEvent  Summary            `json:"first_event"` // first SSE event (sse), first body byte (raw)
	Gap         Summary            `json:"gap"`         // between consecutive events of a response
	Total       Summary            `json:"total"`
	SendLag     Summary            `json:"send_lag"` // open loop: actual send minus intended
	Procs       []ProcResult       `json:"procs"`
	CPUPerReqUs map[string]float64 `json:"cpu_us_per_req,omitempty"`
	// UserPerReqUs is the part of CPUPerReqUs spent in user space: the rest
	// is the kernel's (system calls, the network stack, page faults).
	UserPerReqUs map[string]float64 `json:"user_cpu_us_per_req,omitempty"`
}

func (l *load) result(s *sampler, window time.Duration) *Result {
	o := l.o
	r := &Result{
		Label: o.Label, Path: o.Path, URL: o.URL, Mode: o.Mode, Conns: o.Conns, Rate: o.Rate,
		Chunks: o.Chunks, DelayMs: o.DelayMs, ChunkBytes: o.ChunkBytes, BodyBytes: len(requestBody(o.Mode, o.BodyBytes)),
		WindowS: window.Seconds(), Requests: l.started.Load(), OK: l.ok.Load(), Unsent: l.unsent.Load(),
		PeakOpen: l.peakOpen.Load(),
		TTFB:     l.ttfb.Summarize(), FirstEvent: l.first.Summarize(), Gap: l.gap.Summarize(),
		Total: l.total.Summarize(), SendLag: l.lag.Summarize(),
		Procs: s.results(window),
	}
	for _, v := range l.errs {
		r.Errors += v
	}
	if len(l.errs) > 0 {
		r.ErrorKinds = l.errs
	}
	if w := window.Seconds(); w > 0 {
		r.RPS = float64(l.inWindow.Load()) / w
		r.MBps = float64(l.bytes.Load()) / w / 1e6
	}
	if n := l.inWindow.Load(); n > 0 {
		r.CPUPerReqUs, r.UserPerReqUs = map[string]float64{}, map[string]float64{}
		for _, p := range r.Procs {
			r.CPUPerReqUs[p.Name] = p.CPUSeconds * 1e6 / float64(n)
			r.UserPerReqUs[p.Name] = p.UserCPU * 1e6 / float64(n)
		}
	}
	return r
}

func (r *Result) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func (r *Result) print(w io.Writer) {
	loop := "closed loop"
	if r.Rate > 0 {
		loop = fmt.Sprintf("open loop %.0f/s", r.Rate)
	}
	fmt.Fprintf(w, "%s %s: %s, %d conns, %s, %.1fs: %d ok, %d errors, %d unsent, %.0f req/s, %.1f MB/s, peak open %d\n",
		r.Label, r.Path, r.Mode, r.Conns, loop, r.WindowS, r.OK, r.Errors, r.Unsent, r.RPS, r.MBps, r.PeakOpen)
	if len(r.ErrorKinds) > 0 {
		keys := make([]string, 0, len(r.ErrorKinds))
		for k := range r.ErrorKinds {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprint(w, "  errors:")
		for _, k := range keys {
			fmt.Fprintf(w, " %s=%d", k, r.ErrorKinds[k])
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  %-12s %9s %9s %9s %9s %9s %9s\n", "ms", "p50", "p90", "p99", "p99.9", "max", "n")
	for _, q := range []struct {
		name string
		s    Summary
	}{{"ttfb", r.TTFB}, {"first event", r.FirstEvent}, {"gap", r.Gap}, {"total", r.Total}, {"send lag", r.SendLag}} {
		if q.s.Count == 0 {
			continue
		}
		fmt.Fprintf(w, "  %-12s %9.3f %9.3f %9.3f %9.3f %9.3f %9d\n", q.name, q.s.P50Ms, q.s.P90Ms, q.s.P99Ms, q.s.P999Ms, q.s.MaxMs, q.s.Count)
	}
	for _, p := range r.Procs {
		fmt.Fprintf(w, "  %-8s cpu %5.1f%% (%.0f us/req)  rss idle %d KiB, max %d KiB, at peak %d KiB with %d open, plateau cpu %.1f%%\n",
			p.Name, p.CPUPercent, r.CPUPerReqUs[p.Name], p.IdleRSSKB, p.MaxRSSKB, p.PeakRSSKB, p.PeakOpen, p.PlateauCPU)
	}
}
