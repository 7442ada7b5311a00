package app

import (
	"slices"
	"sync"

	"github.com/stream-relay/stream-relay/quota"
)

// limiterTotals are the rate limiter's counters over the process's life:
// a reload that changes the limits replaces the limiter, whose counters
// start at zero, and the one it replaced goes on deciding the requests
// that began before it for a while (retire). The metrics read the sum of
// the limiters that ended and of those still open, so the counters never
// go down.
type limiterTotals struct {
	mu    sync.Mutex
	ended quota.Stats      // the counters of limiters closed since start
	open  []*quota.Limiter // the running limiter and those retiring
}

// add counts l's decisions from now on.
func (t *limiterTotals) add(l *quota.Limiter) {
	t.mu.Lock()
	t.open = append(t.open, l)
	t.mu.Unlock()
}

// closed moves a closed limiter's final counters into ended.
func (t *limiterTotals) closed(l *quota.Limiter) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if i := slices.Index(t.open, l); i >= 0 {
		t.ended.Add(l.Stats())
		t.open = slices.Delete(t.open, i, i+1)
	}
}

// stats is the sum, for telemetry.Metrics.SetLimiterStats.
func (t *limiterTotals) stats() quota.Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.ended
	for _, l := range t.open {
		s.Add(l.Stats())
	}
	return s
}
