package chlog

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// Options configure a Writer. The zero value of every field means its default.
type Options struct {
	// URL is the ClickHouse HTTP URL, e.g. http://127.0.0.1:8123. Empty means
	// embedded mode: every block goes to the spool directory (unless URLs
	// is set). URL alone is URLs of one.
	URL string
	// URLs (storage.clickhouse.urls) are the ClickHouse nodes the relay may
	// talk to, tried in order: the writer stays on one until it fails
	// (refused, cut, timed out, a 5xx without a ClickHouse code), then moves
	// to the next for the next attempt. Default: [URL]. When both are set,
	// URL must be one of URLs.
	URLs []string
	// Cluster (storage.clickhouse.cluster) is the cluster's name in the
	// servers' remote_servers. Set, the relay creates ON CLUSTER a
	// ReplicatedMergeTree table <Table>_local on every node and a
	// Distributed table <Table> over it sharded by cityHash64(request_id),
	// and inserts into the Distributed table synchronously (see cluster.go).
	// Empty (default): one server, a plain MergeTree table.
	Cluster string
	// Database holds the table; default "relay".
	Database string
	// Table is the table name; default "stream_logs".
	Table string
	// User and Password are sent as X-ClickHouse-User / X-ClickHouse-Key
	// headers when set. They are never logged.
	User, Password string

	// BatchRows cuts a block at this many rows; default 20000, so that
	// BatchBytes and FlushInterval are what cut blocks of captured rows
	// and each insert (a part on the server, merged again later) carries a
	// second's rows up to 20,000 requests a second. ClickHouse's CPU per
	// row falls with fewer, larger parts: measured on 18.16 sharing the 2
	// cores (the relay's production shape, 64 connections, 20-chunk
	// streams of ~4.5 KiB rows, about 3,500 rows a second, server CPU over
	// 8-26 s windows, the allocator tuned as services.sh does), 31-37 us a
	// row with 2000-row blocks against 20-27 us with 20000. Synchronous
	// inserts of one block at a time (BenchmarkInsert) go no faster with
	// larger blocks (2000: 26-29k rows/s, 20000: 21-24k), but the writer
	// encodes while an insert runs.
	BatchRows int
	// BatchBytes cuts a block when its row data reaches this size; default
	// 16 MiB, so full-capture rows of megabytes still make modest inserts.
	// Memory is bounded by MaxBufferBytes: blocks waiting for the sender
	// hold at most a quarter of it (sendqueue.go).
	BatchBytes int
	// FlushInterval sends a non-empty block at least this often; default 1s.
	// It bounds the crash window of the default durability mode and keeps
	// ClickHouse at about one insert per second at low load.
	FlushInterval time.Duration
	// InsertTimeout bounds one insert; default 30s.
	InsertTimeout time.Duration
	// Retries is the number of re-sends after a failed insert before the block
	// is spooled; default 2 (backoff 200ms, 400ms, ...). -1 disables retries.
	Retries int

	// SpoolDir holds spooled Native blocks (and the WAL under wal/);
	// default "data/spool".
	SpoolDir string
	// SpoolMaxBytes caps the spool; past it the oldest files are deleted and
	// their rows counted as dropped. Default 1 GiB.
	SpoolMaxBytes int64

	// Compression of inserts: CompressionAuto (default) sends LZ4 frames
	// to a node on another host and plain Native to one on loopback, where
	// compressing only costs the relay and the server CPU; CompressionLZ4
	// and CompressionNone choose for every node.
	Compression string

	// Durability is "batch" (default; a crash loses at most one flush interval
	// of finished rows) or "wal" (each row is fsync'd to a write-ahead log
	// before Write returns).
	Durability string
	// TTLDays sets a table TTL of that many days, applied only when the server
	// supports TTL (19.6 and later). 0 means none.
	TTLDays int

	// NoMigrate (storage.clickhouse.migrate: false) turns off the ALTERs
	// that add missing columns: start-up then fails on a missing column
	// instead of dropping its data.
	NoMigrate bool

	// MaxBufferBytes (storage.max_buffer_bytes) is the budget for captured
	// bytes held in memory (records and blocks) across all requests. Past
	// it, OnOverload decides. Default: a quarter of the memory the process
	// may use (cgroup limit, else physical memory), at least 64 MiB, at most
	// 1 GiB.
	MaxBufferBytes int64
	// OnOverload (storage.on_overload) is what happens past MaxBufferBytes:
	// OverloadDegrade (default) keeps every row.
	OnOverload string

	// Logger receives what the writer did (never row contents or secrets);
	// default slog.Default().
	Logger *slog.Logger
	// OnInsert, when set, is called after every insert attempt sequence of a
	// block (live or replayed) with its duration, rows and final error.
	OnInsert func(d time.Duration, rows int, err error)
}

// Overload policies (storage.on_overload).
const (
	// OverloadDegrade: new requests capture meta only (their rows say
	// truncated_reason storage_budget); when not even such rows can be
	// queued, new requests are refused with 503 storage_overloaded. Every
	// answered request keeps its row.
	OverloadDegrade = "degrade"
)

// Insert compressions (storage.clickhouse.compression).
const (
	CompressionAuto = "auto"
	CompressionLZ4  = "lz4"
	CompressionNone = "none"
)

// Durability modes.
const (
	DurabilityBatch = "batch"
	DurabilityWAL   = "wal"
)

// DefaultBatchRows is the rows per block a Writer cuts at unless
// Options.BatchRows says otherwise (see there).
const DefaultBatchRows = 20000

func (o *Options) setDefaults() {
	if len(o.URLs) == 0 && o.URL != "" {
		o.URLs = []string{o.URL}
	}
	if o.URL == "" && len(o.URLs) > 0 {
		o.URL = o.URLs[0]
	}
	if o.Database == "" {
		o.Database = "relay"
	}
	if o.Table == "" {
		o.Table = "stream_logs"
	}
	if o.BatchRows == 0 {
		o.BatchRows = DefaultBatchRows
	}
	if o.BatchBytes == 0 {
		o.BatchBytes = 16 << 20
	}
	if o.FlushInterval == 0 {
		o.FlushInterval = time.Second
	}
	if o.InsertTimeout == 0 {
		o.InsertTimeout = 30 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 2
	}
	if o.SpoolDir == "" {
		o.SpoolDir = "data/spool"
	}
	if o.SpoolMaxBytes == 0 {
		o.SpoolMaxBytes = 1 << 30
	}
	if o.Durability == "" {
		o.Durability = DurabilityBatch
	}
	if o.Compression == "" {
		o.Compression = CompressionAuto
	}
	if o.MaxBufferBytes == 0 {
		o.MaxBufferBytes = defaultBufferBytes()
	}
	if o.OnOverload == "" {
		o.OnOverload = OverloadDegrade
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// IdentRule is what a database, table or cluster name must match
// (ValidIdent): the names go into SQL unquoted.
const IdentRule = "must match [A-Za-z_][A-Za-z0-9_]*"

// MinBufferBytes is the least Options.MaxBufferBytes (storage.max_buffer_bytes)
// the writer takes: room for four rows' slots of the budget.
const MinBufferBytes = 4 * rowSlot

func (o *Options) validate() error {
	switch {
	case !ValidIdent(o.Database):
		return fmt.Errorf("chlog: database=%q: %s", o.Database, IdentRule)
	case !ValidIdent(o.Table):
		return fmt.Errorf("chlog: table=%q: %s", o.Table, IdentRule)
	case o.BatchRows < 0:
		return fmt.Errorf("chlog: batch_rows=%d: must be > 0", o.BatchRows)
	case o.BatchBytes < 0:
		return fmt.Errorf("chlog: batch_bytes=%d: must be > 0", o.BatchBytes)
	case o.FlushInterval < 0:
		return fmt.Errorf("chlog: flush_interval=%s: must be > 0", o.FlushInterval)
	case o.InsertTimeout < 0:
		return fmt.Errorf("chlog: insert_timeout=%s: must be > 0", o.InsertTimeout)
	case o.Retries < -1:
		return fmt.Errorf("chlog: retries=%d: must be >= -1", o.Retries)
	case o.SpoolMaxBytes < 0:
		return fmt.Errorf("chlog: spool_max_bytes=%d: must be > 0", o.SpoolMaxBytes)
	case o.TTLDays < 0:
		return fmt.Errorf("chlog: ttl_days=%d: must be >= 0", o.TTLDays)
	case o.MaxBufferBytes < MinBufferBytes:
		return fmt.Errorf("chlog: max_buffer_bytes=%d: must be at least %d", o.MaxBufferBytes, MinBufferBytes)
	case o.OnOverload != OverloadDegrade:
		return fmt.Errorf("chlog: on_overload=%q: must be %q", o.OnOverload, OverloadDegrade)
	case o.Compression != CompressionAuto && o.Compression != CompressionLZ4 && o.Compression != CompressionNone:
		return fmt.Errorf("chlog: compression=%q: must be %q, %q or %q", o.Compression, CompressionAuto, CompressionLZ4, CompressionNone)
	case o.Durability != DurabilityBatch && o.Durability != DurabilityWAL:
		return fmt.Errorf("chlog: durability=%q: must be %q or %q", o.Durability, DurabilityBatch, DurabilityWAL)
	case o.Cluster != "" && !ValidIdent(o.Cluster):
		return fmt.Errorf("chlog: cluster=%q: %s", o.Cluster, IdentRule)
	case o.Cluster != "" && len(o.URLs) == 0:
		return fmt.Errorf("chlog: cluster=%s: needs urls (or url): the nodes to talk to", o.Cluster)
	}
	return o.validateURLs()
}

// validateURLs checks URLs (after setDefaults): each an http(s) URL with a
// host, none twice, and URL among them.
func (o *Options) validateURLs() error {
	seen := make(map[string]bool, len(o.URLs))
	for i, s := range o.URLs {
		u, err := url.Parse(s)
		var ue *url.Error
		switch {
		case errors.As(err, &ue):
			// Not ue itself: it quotes the whole URL, password and all.
			return fmt.Errorf("chlog: urls[%d]: not a URL: %w", i, ue.Err)
		case err != nil:
			return fmt.Errorf("chlog: urls[%d]: not a URL", i)
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			return fmt.Errorf("chlog: urls[%d]=%s: must be http://host:port or https://host:port", i, u.Redacted())
		case seen[NodeKey(s)]:
			return fmt.Errorf("chlog: urls[%d]=%s: listed twice", i, u.Redacted())
		}
		seen[NodeKey(s)] = true
	}
	if o.URL != "" && !seen[NodeKey(o.URL)] {
		return fmt.Errorf("chlog: url=%s: not among urls; set urls alone", RedactURL(o.URL))
	}
	return nil
}

// NodeKey is the node a URL names: its host:port label (the scheme's
// default port when none is written), host in lower case. Two URLs of one
// key are one node (http and https on one port included): one series of
// relay_storage_node_errors_total, and no failover between them. The
// loopback host is one host however it is written (loopbackHost):
// localhost:8123 and 127.0.0.1:8123 are one node. No name is looked up.
// The configuration check (storage.clickhouse.urls) uses the same rule.
func NodeKey(s string) string {
	label := strings.ToLower(nodeLabel(strings.TrimRight(s, "/")))
	host, port, err := net.SplitHostPort(label)
	if err != nil || !loopbackHost(host) {
		return label
	}
	return net.JoinHostPort("localhost", port)
}

// loopbackHost reports whether host (lower case, without brackets) is the
// local machine's loopback address as a URL usually names it: localhost
// (with or without the root's trailing dot), 127.0.0.1 or ::1 in any
// spelling. Other 127.x.y.z addresses are other hosts: local servers may
// listen on each.
func loopbackHost(host string) bool {
	if host == "localhost" || host == "localhost." {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback))
}

// ValidIdent reports whether s is a name the relay takes for a database,
// table or cluster (IdentRule).
func ValidIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
