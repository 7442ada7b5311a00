package telemetry

import (
	"io"
	"strconv"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/stream-relay/stream-relay/upstream"
)

// addRoutesMu serializes AddRoutes (a reload) against itself; readers load
// the route list atomically.
var addRoutesMu sync.Mutex

// AddRoutes registers the series of route names not seen before (a reload
// adding routes). Those of removed routes stay until KeepRoutes retires
// them.
func (m *Metrics) AddRoutes(names []string) {
	addRoutesMu.Lock()
	defer addRoutesMu.Unlock()
	old := *m.routes.Load()
	seen := map[string]bool{"": true}
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	for _, r := range old {
		seen[r.name] = true
		if want[r.name] {
			// Configured again before its series went: they stay (a
			// scrape before KeepRoutes must not drop them).
			r.retired.Store(0)
		}
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
	b := make([]byte, 0, 512+128*len(ts))
	b = appendMeta(b, "relay_upstream_healthy")
	for _, t := range ts {
		v := int64(0)
		if t.Healthy {
			v = 1
		}
		b = appendTargetSample(b, "relay_upstream_healthy", t, v)
	}
	b = appendMeta(b, "relay_upstream_ejections_total")
	for _, t := range ts {
		b = appendTargetSample(b, "relay_upstream_ejections_total", t, int64(t.Ejections))
	}
	_, _ = w.Write(b)
}

// appendTargetSample appends the sample of family name for target t.
func appendTargetSample(b []byte, name string, t upstream.TargetStatus, v int64) []byte {
	b = append(b, name...)
	b = append(b, `{route="`...)
	b = appendLabelValue(b, t.Route)
	b = append(b, `",target="`...)
	b = appendLabelValue(b, t.Target)
	b = append(b, `"} `...)
	b = strconv.AppendInt(b, v, 10)
	return append(b, '\n')
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
