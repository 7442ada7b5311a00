package telemetry

import (
	"strings"
	"time"
)

// retireAfter is how long the series of a route that a reload removed stay
// exported at least: a request matched to the old route just before the
// swap still finds them, and Prometheus scrapes their last values.
const retireAfter = time.Minute

// KeepRoutes marks the routes not among names (a reload removed or renamed
// them) as retired; a route among names that was retired serves again.
// The series of a retired route are unregistered once retireAfter has
// passed and no stream is open on it (a long stream keeps them until it
// ends), at a scrape or the next reload; without that, every rename would
// leave its ~90 series behind for the life of the process. Unmatched is
// never retired.
func (m *Metrics) KeepRoutes(names []string) {
	addRoutesMu.Lock()
	defer addRoutesMu.Unlock()
	keep := make(map[string]bool, len(names))
	for _, n := range names {
		keep[n] = true
	}
	now := m.since()
	rs := *m.routes.Load()
	for _, r := range rs[:len(rs)-1] {
		switch {
		case keep[r.name]:
			r.retired.Store(0)
		case r.retired.Load() == 0:
			r.retired.Store(now)
		}
	}
	m.dropRetiredLocked()
}

// dropRetired unregisters the series of retired routes that are due
// (KeepRoutes).
func (m *Metrics) dropRetired() {
	addRoutesMu.Lock()
	defer addRoutesMu.Unlock()
	m.dropRetiredLocked()
}

func (m *Metrics) dropRetiredLocked() {
	old := *m.routes.Load()
	now := m.since()
	var rs []*route
	for i, r := range old {
		if r.due(now) {
			if rs == nil {
				rs = append(make([]*route, 0, len(old)), old[:i]...)
			}
			m.unregister(r)
			continue
		}
		if rs != nil {
			rs = append(rs, r)
		}
	}
	if rs != nil {
		m.routes.Store(&rs)
	}
}

// since is the time since New (monotonic), in nanoseconds, plus one: never
// 0, the value of a route not retired.
func (m *Metrics) since() int64 { return int64(m.now().Sub(m.born)) + 1 }

// due reports whether r's series may go: retired retireAfter ago or more,
// with no stream open.
func (r *route) due(now int64) bool {
	at := r.retired.Load()
	return at != 0 && now-at >= int64(retireAfter) && r.active.Get() == 0
}

// unregister removes every series of r from m's set: those with r's route
// label (first in each of them), the statuses registered on first use
// included.
func (m *Metrics) unregister(r *route) {
	whole, first := "{"+r.label+"}", "{"+r.label+","
	for _, name := range m.set.ListMetricNames() {
		if strings.Contains(name, whole) || strings.Contains(name, first) {
			m.set.UnregisterMetric(name)
		}
	}
}
