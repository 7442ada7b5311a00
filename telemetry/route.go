package telemetry

import (
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/stream-relay/stream-relay/record"
)

// commonStatuses are registered up front on every route, so that their
// series exist (at 0) before the first such request: rate() and increase()
// need a sample before the first increment to see it. 101 is every
// WebSocket session's, 499 a client's that left before the answer; the
// others are the relay's own refusals and the usual upstream answers.
var commonStatuses = []int{101, 200, 400, 401, 403, 404, 405, 408, 413, 426, 429, 431, 499, 500, 502, 503, 504, 505}

// otherStatus is the slot of status codes outside 100..599.
const otherStatus = 0

// route holds the resolved series of one route label value.
type route struct {
	name  string
	label string // `route="name"`, escaped

	active               *metrics.Gauge
	duration, ttfb, ttft *metrics.PrometheusHistogram
	bytesIn, bytesOut    *metrics.Counter
	tokensIn, tokensOut  *metrics.Counter
	errors               []*metrics.Counter // aligned with record.ErrorTypes
	statuses             [600]atomic.Pointer[metrics.Counter]

	// retired is when a reload removed the route (Metrics.since), 0
	// while it is configured (KeepRoutes).
	retired atomic.Int64
}

func newRoute(set *metrics.Set, name string) *route {
	r := &route{name: name, label: `route="` + escapeLabel(name) + `"`}
	l := "{" + r.label + "}"
	r.active = set.NewGauge("relay_active_connections"+l, nil)
	r.duration = set.NewPrometheusHistogramExt("relay_duration_ms"+l, requestBuckets)
	r.ttfb = set.NewPrometheusHistogramExt("relay_ttfb_ms"+l, requestBuckets)
	r.ttft = set.NewPrometheusHistogramExt("relay_ttft_ms"+l, requestBuckets)
	r.bytesIn = set.NewCounter("relay_bytes_in_total" + l)
	r.bytesOut = set.NewCounter("relay_bytes_out_total" + l)
	r.tokensIn = set.NewCounter(`relay_tokens_total{` + r.label + `,direction="in"}`)
	r.tokensOut = set.NewCounter(`relay_tokens_total{` + r.label + `,direction="out"}`)
	r.errors = make([]*metrics.Counter, len(record.ErrorTypes))
	for i, t := range record.ErrorTypes {
		r.errors[i] = set.NewCounter(`relay_errors_total{` + r.label + `,type="` + t + `"}`)
	}
	for _, code := range commonStatuses {
		r.status(set, code)
	}
	return r
}

// status returns the request counter of code, registering it on first use.
func (r *route) status(set *metrics.Set, code int) *metrics.Counter {
	slot, text := code, ""
	if code < 100 || code >= len(r.statuses) {
		slot, text = otherStatus, "other"
	}
	if c := r.statuses[slot].Load(); c != nil {
		return c
	}
	if text == "" {
		text = strconv.Itoa(code)
	}
	// GetOrCreate: two requests racing here get the same counter.
	c := set.GetOrCreateCounter(`relay_requests_total{` + r.label + `,status="` + text + `"}`)
	r.statuses[slot].Store(c)
	return c
}

// errorCounter returns the counter of error type t; a type outside the fixed
// set counts as internal, which it would be: a relay bug.
func (r *route) errorCounter(t string) *metrics.Counter {
	for i, known := range record.ErrorTypes {
		if known == t {
			return r.errors[i]
		}
	}
	return r.errors[internalIndex]
}

var internalIndex = func() int {
	for i, t := range record.ErrorTypes {
		if t == record.ErrInternal {
			return i
		}
	}
	panic("BUG: record.ErrorTypes lacks record.ErrInternal")
}()

// escapeLabel escapes a label value for the text format: backslash, double
// quote and line feed.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}
