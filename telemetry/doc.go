// Package telemetry exports the relay's Prometheus metrics, built on
// github.com/VictoriaMetrics/metrics.
//
// Usage:
//
//	m := telemetry.New([]string{"openai", "anthropic", "tts"})
//	// handlers.Options{Observer: m, Sinks: []handlers.Sink{store, m}}
//	// chlog.Options{OnInsert: m.ObserveInsert}
//	m.SetStorageStats(store.Stats)
//	m.SetLimiterStats(limiter.Stats)
//	m.WritePrometheus(w) // on GET /metrics
//
// Each Metrics owns its own metrics.Set, so several relays can live in one
// process (tests) without sharing series. Label values are bounded: the
// route label takes the configured route names plus "unmatched", status the
// codes 100..599 (and "other"), type the fixed record.ErrorTypes. Tenants
// and paths never become labels; per-tenant history lives in ClickHouse.
//
// Start and Write run on every request and allocate nothing: all per-route
// series are resolved when New runs and found again by a scan over a short
// slice; only the first request with a new status code on a route registers
// its counter.
//
// Every family is written with its # TYPE line (metrics.ExposeMetadata,
// turned on by New) and the relay's own with a # HELP description from the
// families table (metadata.go); series written by hand at scrape time get
// both from the same table.
//
// Storage and rate-limiter health are read at scrape time from the Stats
// functions of chlog and quota, so those packages keep plain atomics and know
// nothing of Prometheus.
package telemetry
