package main

import (
	"sync"
	"time"

	"github.com/stream-relay/stream-relay/bench/procstat"
)

// sampler reads the watched processes' RSS and CPU time every period, and
// at the two marks that bound the measured window.
type sampler struct {
	procs []procstat.Group
	open  interface{ Load() int64 }

	mu      sync.Mutex
	samples []sample
	marks   [2][]procstat.Usage
	stopC   chan struct{}
	doneC   chan struct{}
}

// sample is one reading of every process, with the streams open then.
type sample struct {
	at   int64
	open int64
	u    []procstat.Usage
}

func newSampler(procs []procstat.Group, open interface{ Load() int64 }) *sampler {
	return &sampler{procs: procs, open: open, stopC: make(chan struct{}), doneC: make(chan struct{})}
}

func (s *sampler) read(switches bool) sample {
	sm := sample{at: mono(), open: s.open.Load(), u: make([]procstat.Usage, len(s.procs))}
	for i := range s.procs {
		sm.u[i], _ = s.procs[i].Read(switches) // a process that exited reads as zero
	}
	return sm
}

func (s *sampler) start(every time.Duration) {
	s.samples = append(s.samples, s.read(false)) // idle: before any request
	go func() {
		defer close(s.doneC)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stopC:
				return
			case <-t.C:
				sm := s.read(false)
				s.mu.Lock()
				s.samples = append(s.samples, sm)
				s.mu.Unlock()
			}
		}
	}()
}

func (s *sampler) mark(i int) {
	sm := s.read(true)
	s.mu.Lock()
	s.marks[i] = sm.u
	s.samples = append(s.samples, sm)
	s.mu.Unlock()
}

func (s *sampler) stop() {
	close(s.stopC)
	<-s.doneC
}

// ProcResult is one watched process group over the run.
type ProcResult struct {
	Name       string  `json:"name"`
	IdleRSSKB  int64   `json:"idle_rss_kb"`     // before the first request
	MaxRSSKB   int64   `json:"max_rss_kb"`      // highest sample
	PeakRSSKB  int64   `json:"peak_rss_kb"`     // highest sample while streams open >= 95% of the most
	PeakOpen   int64   `json:"peak_open"`       // streams open at that sample
	CPUSeconds float64 `json:"cpu_s"`           // user + system over the measured window
	UserCPU    float64 `json:"user_cpu_s"`      // the part of CPUSeconds in user space
	CPUPercent float64 `json:"cpu_pct"`         // of one core, over the measured window
	PlateauCPU float64 `json:"plateau_cpu_pct"` // of one core while streams open >= 95% of the most
	Switches   int64   `json:"ctx_switches"`    // context switches of all threads over the measured window
}

func (s *sampler) results(window time.Duration) []ProcResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	var most int64
	for _, sm := range s.samples {
		most = max(most, sm.open)
	}
	out := make([]ProcResult, len(s.procs))
	for i, p := range s.procs {
		r := ProcResult{Name: p.Name, IdleRSSKB: s.samples[0].u[i].RSSKB}
		var first, last *sample
		for j := range s.samples {
			sm := &s.samples[j]
			r.MaxRSSKB = max(r.MaxRSSKB, sm.u[i].RSSKB)
			if most > 0 && sm.open*100 >= most*95 {
				if first == nil {
					first = sm
				}
				last = sm
				if sm.u[i].RSSKB > r.PeakRSSKB {
					r.PeakRSSKB, r.PeakOpen = sm.u[i].RSSKB, sm.open
				}
			}
		}
		if s.marks[0] != nil && s.marks[1] != nil {
			r.CPUSeconds = float64(s.marks[1][i].Ticks-s.marks[0][i].Ticks) / procstat.ClkTck
			r.UserCPU = float64(s.marks[1][i].User-s.marks[0][i].User) / procstat.ClkTck
			r.Switches = s.marks[1][i].CSW - s.marks[0][i].CSW
			if window > 0 {
				r.CPUPercent = 100 * r.CPUSeconds / window.Seconds()
			}
		}
		if first != nil && last != nil && last.at > first.at {
			r.PlateauCPU = 100 * float64(last.u[i].Ticks-first.u[i].Ticks) / procstat.ClkTck /
				(float64(last.at-first.at) / 1e9)
		}
		out[i] = r
	}
	return out
}
