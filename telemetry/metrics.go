package telemetry

import (
	"bytes"
	"io"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/quota"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
)

// Unmatched is the route label of requests whose path matched no route.
const Unmatched = "unmatched"

// Bucket upper bounds in milliseconds. Relay timings span a 5 ms rejection
// to a five-minute stream (server.timeout's default), and the interesting
// SLO lines (TTFT under 250 ms, 1 s, 2.5 s) fall on bucket bounds, where
// histogram_quantile is exact rather than interpolated.
var (
	requestBuckets = []float64{5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000, 30000, 60000, 120000, 300000}
	storageBuckets = []float64{1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000}
)

// Metrics holds every series the relay exports. It is a handlers.Observer
// (Start) and a handlers.Sink (Write); all its methods are safe for
// concurrent use.
type Metrics struct {
	set    *metrics.Set
	routes atomic.Pointer[[]*route] // configured and retired routes, then Unmatched last; AddRoutes and KeepRoutes replace it

	storageWrite  *metrics.PrometheusHistogram
	storageOK     *metrics.Counter
	storageFailed *metrics.Counter
	storageRows   *metrics.Counter

	storageStats atomic.Pointer[func() chlog.Stats]
	storageNodes atomic.Pointer[func() []chlog.NodeErrors]
	limiterStats atomic.Pointer[func() quota.Stats]
	upstreams    atomic.Pointer[func() []upstream.TargetStatus]
	certExpiry   atomic.Pointer[func() time.Time]
	reloads      reloadCounters
	acceptErrs   *metrics.Counter

	now  func() time.Time // time.Now; tests move it (KeepRoutes)
	born time.Time        // now() at New: retirements are timed from it, on the monotonic clock
}

// New registers the series of the given route names (duplicates and empty
// names are ignored) plus Unmatched on a metrics set of its own. It turns
// on metrics.ExposeMetadata, process-wide (metadata.go): every family the
// relay exports gets its # TYPE line.
func New(routes []string) *Metrics {
	exposeMetadata()
	m := &Metrics{set: metrics.NewSet(), now: time.Now}
	m.born = m.now()
	rs := []*route{newRoute(m.set, Unmatched)}
	m.routes.Store(&rs)
	m.AddRoutes(routes)
	m.storageWrite = m.set.NewPrometheusHistogramExt("relay_storage_write_ms", storageBuckets)
	m.storageOK = m.set.NewCounter(`relay_storage_inserts_total{result="ok"}`)
	m.storageFailed = m.set.NewCounter(`relay_storage_inserts_total{result="error"}`)
	m.storageRows = m.set.NewCounter("relay_storage_insert_rows_total")
	m.reloads.ok = m.set.NewCounter(`relay_config_reloads_total{result="ok"}`)
	m.reloads.failed = m.set.NewCounter(`relay_config_reloads_total{result="error"}`)
	m.acceptErrs = m.set.NewCounter("relay_accept_errors_total")
	return m
}

// route returns the series of the named route; unknown names (and "", no
// route matched) count as Unmatched. A scan beats a map here: a relay has a
// handful of routes, and rec.Route shares its bytes with the configured
// name, so each comparison is a length check and a pointer check.
func (m *Metrics) route(name string) *route {
	rs := *m.routes.Load()
	last := len(rs) - 1
	for _, r := range rs[:last] {
		if r.name == name {
			return r
		}
	}
	return rs[last]
}

// Start counts a stream as open on its route. It allocates nothing.
func (m *Metrics) Start(rec *record.Record) {
	m.route(rec.Route).active.Inc()
}

// Write accounts a finished request: it closes the stream Start opened and
// updates the request, error, timing, byte and token series of its route.
// It allocates nothing once a status code has been seen on the route, and
// never fails (the error is handlers.Sink's).
func (m *Metrics) Write(rec *record.Record) error {
	r := m.route(rec.Route)
	r.status(m.set, rec.Status).Inc()
	if rec.ErrorType != "" {
		r.errorCounter(rec.ErrorType).Inc()
	}
	r.duration.Update(ms(rec.Duration))
	if rec.TTFB >= 0 {
		r.ttfb.Update(ms(rec.TTFB))
	}
	if rec.TTFT >= 0 {
		r.ttft.Update(ms(rec.TTFT))
	}
	if !rec.BytesInDeclared {
		r.bytesIn.AddInt64(rec.BytesIn) // bytes received: not a refused body's declared length
	}
	r.bytesOut.AddInt64(rec.BytesOut)
	if rec.TokensIn > 0 {
		r.tokensIn.AddInt64(rec.TokensIn)
	}
	if rec.TokensOut > 0 {
		r.tokensOut.AddInt64(rec.TokensOut)
	}
	// Last: a route a reload removed keeps its series while a stream is
	// open on it (KeepRoutes), so this request's counts land first.
	r.active.Dec()
	return nil
}

// ObserveInsert records one ClickHouse insert (retries included) of a block
// of rows; its signature is chlog.Options.OnInsert's.
func (m *Metrics) ObserveInsert(d time.Duration, rows int, err error) {
	m.storageWrite.Update(ms(d))
	if err != nil {
		m.storageFailed.Inc()
		return
	}
	m.storageOK.Inc()
	m.storageRows.Add(rows)
}

// SetStorageStats makes every scrape read the ClickHouse writer's counters
// from f (chlog.Writer.Stats). Until it is called the storage health series
// are absent.
func (m *Metrics) SetStorageStats(f func() chlog.Stats) { m.storageStats.Store(&f) }

// SetStorageNodeErrors makes every scrape write
// relay_storage_node_errors_total{node} from f (chlog.Writer.NodeErrors):
// one series per configured ClickHouse URL, so the labels stay bounded.
func (m *Metrics) SetStorageNodeErrors(f func() []chlog.NodeErrors) { m.storageNodes.Store(&f) }

// SetCertExpiry makes every scrape write
// relay_tls_cert_expiry_timestamp_seconds from f: when the listener's
// certificate in use expires (server.tls_cert), for an alert well before.
func (m *Metrics) SetCertExpiry(f func() time.Time) { m.certExpiry.Store(&f) }

// SetLimiterStats makes every scrape read the rate limiter's counters from f
// (quota.Limiter.Stats). Until it is called, or with rate limits disabled,
// the limiter series are absent.
func (m *Metrics) SetLimiterStats(f func() quota.Stats) { m.limiterStats.Store(&f) }

// WritePrometheus writes every series in the Prometheus text format (0.0.4):
// the relay's own, storage and limiter health, then process (file
// descriptors included) and Go runtime metrics. Every family has its
// # TYPE line before its samples, and the relay's own a # HELP line with
// its description (families).
func (m *Metrics) WritePrometheus(w io.Writer) {
	m.dropRetired()
	var buf bytes.Buffer
	m.set.WritePrometheus(&buf)
	if f := m.storageStats.Load(); f != nil && *f != nil {
		writeStorageStats(&buf, (*f)())
	}
	if f := m.storageNodes.Load(); f != nil && *f != nil {
		writeStorageNodes(&buf, (*f)())
	}
	if f := m.limiterStats.Load(); f != nil && *f != nil {
		writeLimiterStats(&buf, (*f)())
	}
	if f := m.upstreams.Load(); f != nil && *f != nil {
		writeUpstreams(&buf, (*f)())
	}
	if f := m.certExpiry.Load(); f != nil && *f != nil {
		buf.Write(appendFamily(nil, "relay_tls_cert_expiry_timestamp_seconds", (*f)().Unix()))
	}
	writeStreamCounters(&buf)
	metrics.WriteProcessMetrics(&buf)
	// Open descriptors matter to a relay: every stream holds two sockets.
	metrics.WriteFDMetrics(&buf)
	withHelp(w, buf.Bytes())
}

// writeStreamCounters writes the stream machinery's process-wide counters
// (package upstream).
func writeStreamCounters(w io.Writer) {
	b := make([]byte, 0, 1024)
	b = appendFamily(b, "relay_spliced_bytes_total", upstream.SplicedBytes())
	b = appendFamily(b, "relay_upstream_empty_reads_total", upstream.EmptyReads())
	// Streams written by the relay's own goroutines (server.detach_streams, detach_above).
	b = appendFamily(b, "relay_detached_streams_total", int64(upstream.HijackedStreams()))
	// Quiet streams waiting without a goroutine (server.idle_wait).
	b = appendFamily(b, "relay_idle_streams", int64(upstream.IdleStreams()))
	b = appendFamily(b, "relay_idle_waits_total", int64(upstream.IdleWaits()))
	_, _ = w.Write(b)
}

// ms converts d to fractional milliseconds, the unit of every histogram.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
