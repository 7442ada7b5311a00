package app

import (
	"cmp"
	"fmt"
	"net"
	"strings"
	"time"
)

// Config is the whole configuration file. Every field has a default (see
// setDefaults and configs/config.yaml); the key names are the interface that
// users write and must keep working.
type Config struct {
	Server    ServerConfig    `koanf:"server"`
	Auth      AuthConfig      `koanf:"auth"`
	Routes    []RouteConfig   `koanf:"routes"`
	Storage   StorageConfig   `koanf:"storage"`
	RateLimit RateLimitConfig `koanf:"rate_limit"`
	Log       LogConfig       `koanf:"log"`
	Metrics   MetricsConfig   `koanf:"metrics"`
}

// ServerConfig is the relay's own listener.
type ServerConfig struct {
	Host          string        `koanf:"host"`           // default "" (all interfaces)
	Port          int           `koanf:"port"`           // default 8080
	Timeout       time.Duration `koanf:"timeout"`        // longest one request may take, whole stream included; default 300s; 0 after defaults is impossible (negative is an error)
	ReadTimeout   time.Duration `koanf:"read_timeout"`   // reading a request's headers and body; default 30s
	IdleTimeout   time.Duration `koanf:"idle_timeout"`   // keep-alive connection idle; default 120s
	ShutdownGrace time.Duration `koanf:"shutdown_grace"` // in-flight streams may finish this long after SIGTERM; default 30s
	MaxBodyBytes  int64         `koanf:"max_body_bytes"` // request body limit (413 past it); default 32 MiB; a route may lower it
	Instance      string        `koanf:"instance"`       // relay instance name in rows and logs; default the host name
	TLSCert       string        `koanf:"tls_cert"`       // optional PEM certificate for the relay's own listener
	TLSKey        string        `koanf:"tls_key"`        // its key; both or neither
	// TrustedProxies are the load balancers (addresses or CIDR prefixes)
	// whose X-Forwarded-For names a request's client_ip; default none:
	// client_ip is the connection's peer.
	TrustedProxies []string `koanf:"trusted_proxies"`
	// UnderscoresInHeaders forwards request headers whose names hold "_";
	// default false: they are dropped (still captured), as nginx does.
	UnderscoresInHeaders bool `koanf:"underscores_in_headers"`
	// SmallStacks serves each request up to its response head on a helper
	// goroutine, so that an open stream's connection goroutine keeps a
	// 4 KiB stack instead of 8 KiB; it costs two goroutine handoffs a
	// streamed request (handlers/handoff.go). Default false.
	SmallStacks bool `koanf:"small_stacks"`
	// DetachStreams has a streamed response written by a goroutine of the
	// relay's own once its head is ready, the server's goroutine and
	// request context let go (handlers/detach.go): an open stream then
	// holds a 4 KiB stack and no request context, about 8 KiB less RSS.
	// Default true; ignored with small_stacks.
	DetachStreams *bool `koanf:"detach_streams"`
	// DetachAbove: with detach_streams, a stream is detached only while
	// more than this many relayed requests are in flight, its own
	// included; the server's goroutine writes the others. Detaching costs
	// goroutine handoffs (a thread woken for each below saturation), which
	// matter to many short streams and memory to many open ones: below
	// the bound the extra stacks stay under its count times 8 KiB. Default
	// 128 (at most 1 MiB); 0: every stream.
	DetachAbove *int64 `koanf:"detach_above"`
	// IdleWait: a detached stream whose last two events came this far
	// apart or more waits for its next one without a goroutine, its
	// upstream socket in the relay's own epoll set (upstream/idlewait.go):
	// no stack while it waits, about 4 KiB less RSS per such stream, for
	// an epoll re-arm and a goroutine handoff per event. Default 100ms
	// (token streams, tens of milliseconds apart, wait in place); negative:
	// never.
	IdleWait time.Duration `koanf:"idle_wait"`
	// GCPercent is the Go garbage collector's target: the heap may grow
	// this many percent over what was live at the last collection before
	// the next one (GOGC). Default 25: the relay allocates next to nothing
	// per request once warm, so collections stay rare, and each open
	// stream costs about 5 KiB less RSS than at Go's 100 (gc.go). The GOGC
	// environment variable, when set, wins.
	GCPercent int `koanf:"gc_percent"`
	// GCFloorBytes is the least the heap may grow between two collections
	// while the live heap grows, whatever GCPercent says of a small live
	// heap (gc.go). Default 8 MiB; a negative value turns the floor off.
	GCFloorBytes int64 `koanf:"gc_floor_bytes"`
}

// Detached reports whether streamed responses are detached from the
// server: detach_streams (default true), unless small_stacks.
func (s *ServerConfig) Detached() bool {
	return (s.DetachStreams == nil || *s.DetachStreams) && !s.SmallStacks
}

// AuthConfig lists the relay keys callers present.
type AuthConfig struct {
	Keys []KeyConfig `koanf:"keys"`
}

// KeyConfig is one relay key: the key itself or its SHA-256 (hex), the tenant
// it belongs to, and the other tenants it may name in X-Tenant-ID.
type KeyConfig struct {
	Key       string   `koanf:"key"`
	KeySHA256 string   `koanf:"key_sha256"`
	Tenant    string   `koanf:"tenant"`
	Tenants   []string `koanf:"tenants"`
	RateLimit int      `koanf:"rate_limit"` // optional requests/minute for this key (0 = tenant's limit only)
}

// RouteConfig is one relayed path.
type RouteConfig struct {
	Name               string            `koanf:"name"`
	Path               string            `koanf:"path"`                 // exact, or a prefix when it ends in "/*"
	Upstream           string            `koanf:"upstream"`             // absolute http(s) base URL
	AuthEnv            string            `koanf:"auth_env"`             // environment variable holding the provider key
	AuthHeader         string            `koanf:"auth_header"`          // default "Authorization" (sent as "Bearer <key>"); other headers get the bare key
	AuthQuery          string            `koanf:"auth_query"`           // kind ws: send the provider key in this query parameter instead of auth_header
	Headers            map[string]string `koanf:"headers"`              // sent upstream when the client did not send them
	SetHeaders         map[string]string `koanf:"set_headers"`          // always sent upstream, replacing the client's (a pinned OpenAI-Project)
	Kind               string            `koanf:"kind"`                 // sse (default) | raw | ws (WebSocket; see handlers/ws.go)
	ConnectTimeout     time.Duration     `koanf:"connect_timeout"`      // default 10s
	FirstByteTimeout   time.Duration     `koanf:"first_byte_timeout"`   // until the upstream's response headers; default 120s
	IdleTimeout        time.Duration     `koanf:"idle_timeout"`         // silence between chunks; default 120s
	MaxBodyBytes       int64             `koanf:"max_body_bytes"`       // default server.max_body_bytes
	MaxConns           int               `koanf:"max_conns"`            // connections to the upstream host; default 4096
	ReadBufferBytes    int               `koanf:"read_buffer_bytes"`    // a stream's upstream read buffer; default 32 KiB (sse), 256 KiB (raw)
	Capture            string            `koanf:"capture"`              // full | meta; default full for sse, meta for raw
	MaxCaptureBytes    int               `koanf:"max_capture_bytes"`    // per direction; default 4 MiB
	InjectIncludeUsage bool              `koanf:"inject_include_usage"` // add stream_options.include_usage to OpenAI streaming requests
	TLSSkipVerify      bool              `koanf:"tls_skip_verify"`      // accept any upstream certificate (never in production)
	// Methods are the HTTP methods relayed on the route; others get 405.
	// Default: POST and OPTIONS on an exact path (one endpoint: a GET of
	// OpenAI's /v1/chat/completions lists the project's stored
	// completions, every tenant's under a shared key), any on a prefix.
	Methods []string `koanf:"methods"`
	// Upstreams replaces upstream with several targets (give one or the
	// other): weighted primaries, backups, each with its own key.
	Upstreams []UpstreamConfig `koanf:"upstreams"`
	Failover  FailoverConfig   `koanf:"failover"`
	Health    HealthConfig     `koanf:"health"`

	// maxBodyDefault: max_body_bytes was not set and took
	// server.max_body_bytes, which a reload does not change (reload.go).
	maxBodyDefault bool
}

// UpstreamConfig is one target of a route's upstreams list.
type UpstreamConfig struct {
	Name    string `koanf:"name"`     // label in metrics, logs and rows; default the index
	URL     string `koanf:"url"`      // absolute http(s) base URL (required)
	AuthEnv string `koanf:"auth_env"` // variable holding this target's provider key; default the route's auth_env
	Weight  int    `koanf:"weight"`   // default 1
	Backup  bool   `koanf:"backup"`   // serves only while no primary is available
}

// FailoverConfig says when a request goes to another target, before its
// first byte went to the client.
type FailoverConfig struct {
	On          []string `koanf:"on"`           // connect | timeout | 429 | 5xx; default [connect, timeout, 5xx]
	MaxAttempts int      `koanf:"max_attempts"` // targets tried per request; default 2
}

// HealthConfig is the passive health of a route's targets.
type HealthConfig struct {
	MaxFails    int           `koanf:"max_fails"`    // consecutive failures that eject a target; default 3
	Cooldown    time.Duration `koanf:"cooldown"`     // first ejection, doubling on each failed probe; default 10s
	MaxCooldown time.Duration `koanf:"max_cooldown"` // default 5m
}

// StorageConfig is where rows and buckets live.
type StorageConfig struct {
	Redis      RedisConfig      `koanf:"redis"`
	ClickHouse ClickHouseConfig `koanf:"clickhouse"`
	SpoolDir   string           `koanf:"spool_dir"` // default data/spool
	// MaxBufferBytes bounds the captured bytes held in memory for storage,
	// across all requests; 0 = chlog's default (a quarter of the memory the
	// process may use, at least 64 MiB, at most 1 GiB).
	MaxBufferBytes int64 `koanf:"max_buffer_bytes"`
	// OnOverload is the policy past max_buffer_bytes: degrade (default:
	// meta-only rows, then 503 storage_overloaded; every answered request
	// keeps its row).
	OnOverload string `koanf:"on_overload"`
}

// RedisConfig is the shared rate-limit store; an empty addr keeps buckets in process.
type RedisConfig struct {
	Addr     string `koanf:"addr"`
	Password string `koanf:"password"`
}

// ClickHouseConfig is the row store; an empty url writes spool files only.
type ClickHouseConfig struct {
	URL           string        `koanf:"url"`      // e.g. http://localhost:8123
	URLs          []string      `koanf:"urls"`     // nodes the relay may talk to, in order, the next one after a node fails; url alone = urls of one
	Cluster       string        `koanf:"cluster"`  // name in remote_servers: <table>_local (replicated) and <table> (distributed) made ON CLUSTER; empty = one server
	Addr          string        `koanf:"addr"`     // native address (host:9000) of the product description: used as http://HOST:8123 when url is empty
	Database      string        `koanf:"database"` // default relay
	Table         string        `koanf:"table"`    // default stream_logs
	User          string        `koanf:"user"`
	Password      string        `koanf:"password"`
	BatchRows     int           `koanf:"batch_rows"`
	BatchBytes    int           `koanf:"batch_bytes"`
	FlushInterval time.Duration `koanf:"flush_interval"`
	InsertTimeout time.Duration `koanf:"insert_timeout"` // one insert; default 30s
	SpoolMaxBytes int64         `koanf:"spool_max_bytes"`
	Compression   string        `koanf:"compression"` // auto (default: LZ4 unless the server is on loopback) | lz4 | none
	Durability    string        `koanf:"durability"`  // batch (default) | wal
	TTLDays       int           `koanf:"ttl_days"`
	// Migrate adds missing columns with ALTER TABLE at start (default true);
	// false: the relay refuses to start on a missing column.
	Migrate *bool `koanf:"migrate"`
}

// RateLimitConfig is the tenants' token buckets.
type RateLimitConfig struct {
	Default         int              `koanf:"default"`           // requests per minute per tenant; default 100
	Burst           int              `koanf:"burst"`             // bucket size; default = default
	Tenants         map[string]int   `koanf:"tenants"`           // per-tenant requests per minute
	TokensPerMinute int64            `koanf:"tokens_per_minute"` // optional token budget per tenant (0 = off)
	TenantTokens    map[string]int64 `koanf:"tenant_tokens"`     // per-tenant token budgets
	OnRedisError    string           `koanf:"on_redis_error"`    // local (default) | allow | deny
	RedisTimeout    time.Duration    `koanf:"redis_timeout"`     // longest wait for one Redis decision before on_redis_error; default 50ms
	Lease           int              `koanf:"lease"`             // requests one Redis decision may admit ahead; default 16, 1 = off
	LeaseTTL        time.Duration    `koanf:"lease_ttl"`         // unused leased requests go back after this; default 1s
	LeaseRenewBelow int              `koanf:"lease_renew_below"` // renew a busy tenant's lease in the background at this many left; default lease/4, -1 = off
	LeaseMax        int              `koanf:"lease_max"`         // the most a busy tenant's lease grows to; default 16 × lease, = lease: fixed
	Disabled        bool             `koanf:"disabled"`          // no rate limiting at all
}

// LogConfig is the relay's own log.
type LogConfig struct {
	Level  string `koanf:"level"`  // debug | info (default) | warn | error
	Format string `koanf:"format"` // text (default) | json
}

// MetricsConfig is the Prometheus endpoint.
type MetricsConfig struct {
	Addr  string `koanf:"addr"`  // "" serves /metrics on the main port; "host:port" serves it there instead
	PProf bool   `koanf:"pprof"` // also serve /debug/pprof/ on metrics.addr (needs addr)
}

const (
	defaultPort            = 8080
	defaultTimeout         = 300 * time.Second
	defaultReadTimeout     = 30 * time.Second
	defaultIdleTimeout     = 120 * time.Second
	defaultShutdownGrace   = 30 * time.Second
	defaultMaxBodyBytes    = 32 << 20
	defaultConnectTimeout  = 10 * time.Second
	defaultFirstByte       = 120 * time.Second
	defaultChunkIdle       = 120 * time.Second
	defaultMaxConns        = 4096
	defaultMaxCaptureBytes = 4 << 20
	defaultRateLimit       = 100
	defaultGCPercent       = 25
	defaultGCFloorBytes    = 8 << 20
	defaultIdleWait        = 100 * time.Millisecond
	defaultDetachAbove     = 128
)

func (c *Config) setDefaults(hostname string) {
	s := &c.Server
	s.Port = cmp.Or(s.Port, defaultPort)
	s.Timeout = cmp.Or(s.Timeout, defaultTimeout)
	s.ReadTimeout = cmp.Or(s.ReadTimeout, defaultReadTimeout)
	s.IdleTimeout = cmp.Or(s.IdleTimeout, defaultIdleTimeout)
	s.ShutdownGrace = cmp.Or(s.ShutdownGrace, defaultShutdownGrace)
	s.MaxBodyBytes = cmp.Or(s.MaxBodyBytes, defaultMaxBodyBytes)
	s.GCPercent = cmp.Or(s.GCPercent, defaultGCPercent)
	s.GCFloorBytes = cmp.Or(s.GCFloorBytes, defaultGCFloorBytes)
	s.IdleWait = cmp.Or(s.IdleWait, defaultIdleWait)
	if s.DetachAbove == nil {
		n := int64(defaultDetachAbove)
		s.DetachAbove = &n
	}
	s.Instance = cmp.Or(s.Instance, hostname)
	for i := range c.Routes {
		r := &c.Routes[i]
		r.Kind = cmp.Or(r.Kind, "sse")
		r.AuthHeader = cmp.Or(r.AuthHeader, "Authorization")
		r.ConnectTimeout = cmp.Or(r.ConnectTimeout, defaultConnectTimeout)
		r.FirstByteTimeout = cmp.Or(r.FirstByteTimeout, defaultFirstByte)
		r.IdleTimeout = cmp.Or(r.IdleTimeout, defaultChunkIdle)
		r.maxBodyDefault = r.MaxBodyBytes == 0
		r.MaxBodyBytes = cmp.Or(r.MaxBodyBytes, s.MaxBodyBytes)
		r.MaxConns = cmp.Or(r.MaxConns, defaultMaxConns)
		if r.Capture == "" {
			r.Capture = "full"
			if r.Kind == "raw" {
				r.Capture = "meta"
			}
		}
		r.MaxCaptureBytes = cmp.Or(r.MaxCaptureBytes, defaultMaxCaptureBytes)
		if r.Methods == nil && r.Kind != "ws" && !strings.HasSuffix(r.Path, "/*") {
			r.Methods = []string{"POST", "OPTIONS"}
		}
	}
	c.Storage.SpoolDir = cmp.Or(c.Storage.SpoolDir, "data/spool")
	c.Storage.OnOverload = cmp.Or(c.Storage.OnOverload, "degrade")
	c.Storage.ClickHouse.Database = cmp.Or(c.Storage.ClickHouse.Database, "relay")
	if ch := &c.Storage.ClickHouse; ch.URL == "" && len(ch.URLs) == 0 && ch.Addr != "" {
		ch.URL = ClickHouseURLFromAddr(ch.Addr)
	}
	c.RateLimit.Default = cmp.Or(c.RateLimit.Default, defaultRateLimit)
	c.RateLimit.OnRedisError = cmp.Or(c.RateLimit.OnRedisError, "local")
	c.Log.Level = cmp.Or(c.Log.Level, "info")
	c.Log.Format = cmp.Or(c.Log.Format, "text")
}

// ClickHouseHTTPPort is the port storage.clickhouse.addr maps to: the relay
// speaks ClickHouse's HTTP interface, not the native protocol of port 9000.
const ClickHouseHTTPPort = "8123"

// ClickHouseURLFromAddr turns storage.clickhouse.addr (host:port of the
// native protocol, e.g. localhost:9000) into the HTTP URL the relay uses:
// the same host on port 8123. A url set beside addr wins (setDefaults maps
// only when url is empty).
func ClickHouseURLFromAddr(addr string) string {
	addr = strings.TrimSpace(addr)
	if _, rest, ok := strings.Cut(addr, "://"); ok {
		addr = rest // tcp://host:9000, clickhouse://host:9000
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]") // no port given
	}
	if host == "" {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, ClickHouseHTTPPort)
}

// storageSummary is the storage= field of the start-up line.
func (c *Config) storageSummary() string {
	ch := c.Storage.ClickHouse
	switch {
	case len(ch.URLs) > 0 && ch.Cluster != "":
		return "clickhouse cluster " + ch.Cluster + " via " + strings.Join(ch.URLs, ", ")
	case ch.Cluster != "":
		return "clickhouse cluster " + ch.Cluster + " via " + ch.URL
	case len(ch.URLs) > 0:
		return "clickhouse " + strings.Join(ch.URLs, ", ")
	case ch.URL == "":
		return "spool files only (no ClickHouse configured) in " + c.Storage.SpoolDir
	case ch.Addr != "" && ch.URL == ClickHouseURLFromAddr(ch.Addr):
		return "clickhouse " + ch.URL + " (HTTP port " + ClickHouseHTTPPort + " on the host of storage.clickhouse.addr " + shownURL(ch.Addr).String() + "; set url to choose another)"
	}
	return "clickhouse " + ch.URL
}

// fieldError is a configuration error that names the field and its value.
type fieldError struct {
	field string
	value any
	why   string
}

func (e *fieldError) Error() string {
	return fmt.Sprintf("config: %s=%v: %s", e.field, e.value, e.why)
}

// RedactURL is s as the relay shows a URL in a message: its user info and
// its query or fragment replaced by "redacted" (see shownURL).
func RedactURL(s string) string { return shownURL(s).String() }

// shownURL is a URL as a configuration error shows it: the user info and
// the query or fragment, where credentials travel (a password, a Gemini
// ?key=), are replaced by "redacted", so that an error on start-up or a
// refused reload never writes them to a log.
type shownURL string

func (u shownURL) String() string {
	s := string(u)
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	head, rest := s[:start], s[start:]
	// The user info ends at the last '@': a password may hold '/', '?' or
	// '#' (base64 does), which end the host in a parsed URL, so cutting
	// there first showed the password. A path with an '@' loses more than
	// it needs to, which a message can afford.
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if strings.ContainsAny(rest[:at], "?#") {
			// The '@' may be the query's (?user=me@corp&key=...):
			// what follows it is no less secret.
			return head + "redacted"
		}
		head += "redacted"
		rest = rest[at:]
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i+1] + "redacted"
	}
	return head + rest
}
