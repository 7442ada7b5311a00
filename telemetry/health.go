package telemetry

import (
	"io"
	"strconv"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/quota"
)

// Scrape-time series are written as plain lines rather than through
// metrics.WriteCounterUint64: with metrics.ExposeMetadata on, that helper
// repeats the TYPE line for every series of a family, which Prometheus
// rejects, and its HELP line has no text. appendMeta writes each family's
// HELP and TYPE once, from families (metadata.go).

// writeStorageStats writes the ClickHouse writer's counters and spool gauges.
func writeStorageStats(w io.Writer, s chlog.Stats) {
	b := make([]byte, 0, 4096)
	b = appendFamily(b, "relay_storage_rows_written_total", s.RowsWritten)
	b = appendFamily(b, "relay_storage_rows_spooled_total", s.RowsSpooled)
	b = appendFamily(b, "relay_storage_rows_replayed_total", s.RowsReplayed)
	b = appendFamily(b, "relay_storage_rows_dropped_total", s.RowsDropped)
	b = appendFamily(b, "relay_storage_insert_errors_total", s.InsertErrors)
	b = appendFamily(b, "relay_storage_wal_errors_total", s.WALErrors)
	b = appendFamily(b, "relay_storage_spool_files", s.SpoolFiles)
	b = appendFamily(b, "relay_storage_spool_bytes", s.SpoolBytes)
	b = appendFamily(b, "relay_storage_rows_rejected_total", s.RowsRejected)
	b = appendFamily(b, "relay_storage_blocked", s.Blocked)
	b = appendFamily(b, "relay_storage_buffer_bytes", s.BufferedBytes)
	b = appendFamily(b, "relay_storage_rows_degraded_total", s.RowsDegraded)
	b = appendFamily(b, "relay_storage_refused_total", s.Refused)
	_, _ = w.Write(b)
}

// writeStorageNodes writes the failures of each ClickHouse node (host:port
// of a configured URL; a label value needs no escaping of those).
func writeStorageNodes(w io.Writer, nodes []chlog.NodeErrors) {
	if len(nodes) == 0 {
		return
	}
	b := make([]byte, 0, 256+64*len(nodes))
	b = appendMeta(b, "relay_storage_node_errors_total")
	for _, n := range nodes {
		b = append(b, `relay_storage_node_errors_total{node="`...)
		b = appendLabelValue(b, n.Node)
		b = append(b, `"} `...)
		b = strconv.AppendInt(b, n.Errors, 10)
		b = append(b, '\n')
	}
	_, _ = w.Write(b)
}

// appendLabelValue appends s escaped as a Prometheus label value.
func appendLabelValue(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		default:
			b = append(b, c)
		}
	}
	return b
}

// limiterSeries are the decision series names, by result then quota.Source,
// built once so that a scrape does not rebuild them.
var limiterSeries = func() (s [2][quota.NumSources]string) {
	for i := range quota.NumSources {
		src := quota.Source(i).String()
		s[0][i] = `relay_ratelimit_decisions_total{result="admitted",source="` + src + `"}`
		s[1][i] = `relay_ratelimit_decisions_total{result="refused",source="` + src + `"}`
	}
	return s
}()

// writeLimiterStats writes the rate limiter's decisions and Redis health.
func writeLimiterStats(w io.Writer, s quota.Stats) {
	b := make([]byte, 0, 4096)
	b = appendMeta(b, "relay_ratelimit_decisions_total")
	for i := range quota.NumSources {
		b = appendSample(b, limiterSeries[0][i], int64(s.Admitted[i]))
		b = appendSample(b, limiterSeries[1][i], int64(s.Refused[i]))
	}
	b = appendMeta(b, "relay_ratelimit_switches_total")
	b = appendSample(b, `relay_ratelimit_switches_total{to="fallback"}`, int64(s.ToFallback))
	b = appendSample(b, `relay_ratelimit_switches_total{to="redis"}`, int64(s.ToRedis))
	b = appendFamily(b, "relay_ratelimit_redis_errors_total", int64(s.RedisErrors))
	b = appendFamily(b, "relay_ratelimit_leases_total", int64(s.Leases))
	b = appendFamily(b, "relay_ratelimit_lease_renewals_total", int64(s.LeaseRenewals))
	b = appendFamily(b, "relay_ratelimit_lease_tokens_returned_total", int64(s.LeaseTokensReturned))
	b = appendFamily(b, "relay_ratelimit_fallback_charged_total", int64(s.ChargedBack))
	_, _ = w.Write(b)
}

// appendFamily appends a family of one series without labels: its HELP
// and TYPE lines and its sample.
func appendFamily(b []byte, name string, v int64) []byte {
	return appendSample(appendMeta(b, name), name, v)
}

// appendSample appends one "series value" line.
func appendSample(b []byte, series string, v int64) []byte {
	b = append(b, series...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, v, 10)
	return append(b, '\n')
}
