package telemetry

import (
	"bytes"
	"io"

	"github.com/VictoriaMetrics/metrics"
)

// family is the metadata of one metric family the relay exports: its
// Prometheus type and the one-line description of its # HELP line.
type family struct {
	typ, help string
}

// families holds the metadata of every relay_* family, whether a
// metrics.Set writes it (its TYPE then comes from the Set, and a test
// checks it against typ) or the relay writes it by hand at scrape time
// (appendMeta). The descriptions are one line each, without backslashes:
// nothing to escape. deployments/grafana/README.md says more about each.
var families = map[string]family{
	// Requests, per route (route.go).
	"relay_requests_total":     {"counter", "Requests answered, by route and the status code sent to the client."},
	"relay_errors_total":       {"counter", "Requests that ended in an error, by route and error type (the error_type of stream_logs)."},
	"relay_active_connections": {"gauge", "Requests in progress now, by route: streams open."},
	"relay_duration_ms":        {"histogram", "Request duration in milliseconds, until the last byte reached the client, by route."},
	"relay_ttft_ms":            {"histogram", "Time to the first content token (sse), first audio byte (raw) or first upstream message after the client's first (ws) in milliseconds, by route."},
	"relay_ttfb_ms":            {"histogram", "Time to the upstream's first response byte in milliseconds, by route."},
	"relay_bytes_in_total":     {"counter", "Request body bytes received from clients, by route."},
	"relay_bytes_out_total":    {"counter", "Response body bytes read from upstreams for clients, by route (a client that left mid-stream is counted what was read for it)."},
	"relay_tokens_total":       {"counter", "Tokens from the upstreams' usage objects, by route and direction (in: prompt, out: completion)."},

	// Configuration.
	"relay_accept_errors_total":  {"counter", "Accepts of client connections that failed for want of a resource (file descriptors, memory) and were tried again after a pause; the connections wait in the backlog meanwhile."},
	"relay_config_reloads_total": {"counter", "Configuration reloads, by result (ok: applied, error: refused, the old configuration runs on)."},

	// Storage: the ClickHouse writer's inserts (ObserveInsert) and its
	// counters read at scrape time (writeStorageStats, writeStorageNodes).
	"relay_storage_write_ms":            {"histogram", "Time of one block insert into ClickHouse in milliseconds, retries included."},
	"relay_storage_inserts_total":       {"counter", "Block inserts into ClickHouse, by result after retries (ok or error)."},
	"relay_storage_insert_rows_total":   {"counter", "Rows in the blocks inserted into ClickHouse successfully, live and replayed."},
	"relay_storage_rows_written_total":  {"counter", "Rows confirmed in ClickHouse, live and replayed from the spool."},
	"relay_storage_rows_spooled_total":  {"counter", "Rows written to spool files because ClickHouse could not take them."},
	"relay_storage_rows_replayed_total": {"counter", "Spooled rows later inserted into ClickHouse."},
	"relay_storage_rows_dropped_total":  {"counter", "Rows lost for good: spool cap reached, overload, write after close or a failed spool write."},
	"relay_storage_insert_errors_total": {"counter", "Failed ClickHouse insert attempts, retries included."},
	"relay_storage_wal_errors_total":    {"counter", "Failed write-ahead log writes or fsyncs."},
	"relay_storage_spool_files":         {"gauge", "Spool files on disk now."},
	"relay_storage_spool_bytes":         {"gauge", "Spool bytes on disk now: the backlog to replay."},
	"relay_storage_rows_rejected_total": {"counter", "Rows set aside in spool_dir/rejected/ because they can never be inserted as they are."},
	"relay_storage_blocked":             {"gauge", "1 while the head of the spool keeps failing with a schema error, else 0."},
	"relay_storage_buffer_bytes":        {"gauge", "Captured bytes held in memory for storage now, against storage.max_buffer_bytes."},
	"relay_storage_rows_degraded_total": {"counter", "Rows admitted meta only (no bodies) because storage was over its memory budget or the spool near its cap (such a row may still be dropped at the cap: relay_storage_rows_dropped_total)."},
	"relay_storage_refused_total":       {"counter", "Requests refused with 503 storage_overloaded."},
	"relay_storage_node_errors_total":   {"counter", "Failures of each configured ClickHouse node, by node (host:port)."},

	// Rate limiter, read at scrape time (writeLimiterStats).
	"relay_ratelimit_decisions_total":             {"counter", "Rate limit decisions, by result (admitted, refused) and by what decided them (source)."},
	"relay_ratelimit_switches_total":              {"counter", "Rate limiter switches from Redis to its fallback and back, by the side switched to."},
	"relay_ratelimit_redis_errors_total":          {"counter", "Failed or timed-out Redis calls of the rate limiter."},
	"relay_ratelimit_leases_total":                {"counter", "Redis script runs that took a lease of tokens, renewals included."},
	"relay_ratelimit_lease_renewals_total":        {"counter", "Leases renewed in the background before they ran out."},
	"relay_ratelimit_lease_tokens_returned_total": {"counter", "Unused leased tokens given back to the buckets."},
	"relay_ratelimit_fallback_charged_total":      {"counter", "Requests the fallback admitted in-process, charged to Redis once it decided again."},

	// Upstream targets (writeUpstreams) and the stream machinery's
	// process-wide counters (WritePrometheus).
	"relay_upstream_healthy":           {"gauge", "1 while an upstream target takes requests, 0 while it is ejected, by route and target."},
	"relay_upstream_ejections_total":   {"counter", "Times an upstream target was ejected, by route and target."},
	"relay_spliced_bytes_total":        {"counter", "Response bytes moved from an upstream's socket to the client's with splice(2), never copied."},
	"relay_upstream_empty_reads_total": {"counter", "Upstream body reads that found the socket empty, each a system call spent before a wait."},
	"relay_detached_streams_total":     {"counter", "Streams written by the relay's own goroutines after the server let go of their connection."},
	"relay_idle_streams":               {"gauge", "Streams waiting now for their next event without a goroutine (server.idle_wait)."},
	"relay_idle_waits_total":           {"counter", "Waits of quiet streams for their next event without a goroutine (server.idle_wait)."},

	// The listener's certificate (SetCertExpiry).
	"relay_tls_cert_expiry_timestamp_seconds": {"gauge", "When the listener's certificate in use expires (server.tls_cert), in Unix seconds."},
}

// exposeMetadata turns on metrics.ExposeMetadata, which is process-wide:
// every metrics.Set then writes a # HELP (without text) and a # TYPE line
// once per family, and so do the Go runtime and process metrics of
// metrics.WriteProcessMetrics. The relay's own HELP lines get their text
// from families (withHelp).
func exposeMetadata() { metrics.ExposeMetadata(true) }

// appendMeta appends the # HELP and # TYPE lines of family name, written
// by hand, before its first sample. A name missing from families is a bug
// that the tests catch: it gets its TYPE as untyped and no HELP.
func appendMeta(b []byte, name string) []byte {
	f, ok := families[name]
	if !ok {
		return append(append(append(b, "# TYPE "...), name...), " untyped\n"...)
	}
	b = append(b, "# HELP "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, f.help...)
	b = append(b, "\n# TYPE "...)
	b = append(b, name...)
	b = append(b, ' ')
	b = append(b, f.typ...)
	return append(b, '\n')
}

var helpPrefix = []byte("# HELP ")

// withHelp copies an exposition from src to w, giving each # HELP line
// without text (as metrics.Set and the library's process metrics write
// them) the description in families, and dropping it when its family has
// none: an empty HELP says nothing. Every other line passes unchanged.
func withHelp(w io.Writer, src []byte) {
	dst := make([]byte, 0, len(src)+len(src)/4)
	for len(src) > 0 {
		line := src
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i+1], src[i+1:]
		} else {
			src = nil
		}
		name, ok := bytes.CutPrefix(bytes.TrimRight(line, "\n"), helpPrefix)
		if !ok || bytes.IndexByte(name, ' ') >= 0 {
			dst = append(dst, line...)
			continue
		}
		if f, known := families[string(name)]; known {
			dst = append(dst, helpPrefix...)
			dst = append(dst, name...)
			dst = append(dst, ' ')
			dst = append(dst, f.help...)
			dst = append(dst, '\n')
		}
	}
	_, _ = w.Write(dst)
}
