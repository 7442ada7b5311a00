package telemetry

import (
	"fmt"
	"io"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/stream-relay/stream-relay/upstream"
)

// addRoutesMu serializes AddRoutes (a reload) against itself; readers load
// the route list atomically.
var addRoutesMu sync.Mutex

// AddRoutes registers the series of route names not seen before (a reload
// adding routes). Those of removed routes stay, at their last values.
func (m *Metrics) AddRoutes(names []string) {
	addRoutesMu.Lock()
	defer addRoutesMu.Unlock()
	old := *m.routes.Load()
	seen := map[string]bool{"": true}
	for _, r := range old {
		seen[r.name] = true
	}
	rs := append([]*route(nil), old[:len(old)-1]...)
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		rs = append(rs, newRoute(m.set, name))
	}
	rs = append(rs, old[len(old)-1])
	m.routes.Store(&rs)
}

// SetUpstreams makes every scrape write relay_upstream_healthy{route,target}
// (1 or 0) and relay_upstream_ejections_total{route,target} from f: the
// targets of the routes serving now. target is the target's name or index,
// never a key.
func (m *Metrics) SetUpstreams(f func() []upstream.TargetStatus) { m.upstreams.Store(&f) }

func writeUpstreams(w io.Writer, ts []upstream.TargetStatus) {
	if len(ts) == 0 {
		return
	}
	fmt.Fprintf(w, "# TYPE relay_upstream_healthy gauge\n")
	for _, t := range ts {
		v := 0
		if t.Healthy {
			v = 1
		}
		fmt.Fprintf(w, "relay_upstream_healthy{route=\"%s\",target=\"%s\"} %d\n", escapeLabel(t.Route), escapeLabel(t.Target), v)
	}
	fmt.Fprintf(w, "# TYPE relay_upstream_ejections_total counter\n")
	for _, t := range ts {
		fmt.Fprintf(w, "relay_upstream_ejections_total{route=\"%s\",target=\"%s\"} %d\n", escapeLabel(t.Route), escapeLabel(t.Target), t.Ejections)
	}
}

// reloadCounters are relay_config_reloads_total{result}.
type reloadCounters struct {
	ok, failed *metrics.Counter
}

// ConfigReloaded counts one configuration reload, applied (ok) or refused.
func (m *Metrics) ConfigReloaded(ok bool) {
	if ok {
		m.reloads.ok.Inc()
	} else {
		m.reloads.failed.Inc()
	}
}
