package app

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/dotenv"
	"github.com/knadh/koanf/providers/env"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/handlers"
	"github.com/stream-relay/stream-relay/quota"
	"github.com/stream-relay/stream-relay/telemetry"
	"github.com/stream-relay/stream-relay/upstream"
)

// envPrefix starts every environment override: RELAY_SERVER__PORT=9000
// sets server.port; a double underscore separates levels, because single
// underscores belong to key names such as spool_dir.
const envPrefix = "RELAY_"

// minFlushInterval is the shortest storage.clickhouse.flush_interval.
const minFlushInterval = 10 * time.Millisecond

// maxLease bounds rate_limit.lease: the limiter's lease_max is 16 of it,
// and larger leases take more of a budget than one relay can spend.
const maxLease = 1_000_000

// sections are the top-level keys an environment override may address, so
// that unrelated RELAY_* variables are ignored instead of rejected.
var sections = map[string]bool{
	"server": true, "auth": true, "routes": true, "storage": true,
	"rate_limit": true, "log": true, "metrics": true,
}

// LoadEnvFile loads a .env file (KEY=VALUE lines) into the process
// environment without overriding variables already set. A missing file is
// not an error.
func LoadEnvFile(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("config: env file %s: %w", path, err)
	}
	m, err := parseEnvFile(path, b)
	if err != nil {
		return err
	}
	for k, v := range m {
		if _, set := os.LookupEnv(k); set {
			continue
		}
		s, _ := v.(string)
		if err := os.Setenv(k, s); err != nil {
			return fmt.Errorf("config: env file %s: %s: %w", path, k, err)
		}
		envFromFile.set(k, s) // a reload may change it (see reload.go)
	}
	return nil
}

// Load reads the YAML file at path, applies RELAY_* environment overrides,
// fills defaults and validates. The error names the offending field.
func Load(path string) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(file.Provider(path), yamlText{}); err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	if v := envListItem(os.Environ()); v != "" {
		return nil, fmt.Errorf("config: environment: %s: list items (routes, auth.keys, storage.clickhouse.urls) cannot be set from the environment: set them in %s", v, path)
	}
	if err := envTypo(os.Environ()); err != nil {
		return nil, err
	}
	if err := k.Load(env.Provider(envPrefix, ".", envKey), nil); err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}
	return decode(k)
}

// envListItem returns the first RELAY_ variable of environ that names an
// item of a list (RELAY_ROUTES__0__UPSTREAM), "" when none does: the
// decoder would refuse it as a map key "0" of a list, without saying why.
//
// The lists of objects are refused whole too (RELAY_ROUTES__NAME,
// RELAY_AUTH__KEYS=...): the decoder took the map for a list of one item
// and the file's routes or keys were replaced by it, without a word. A
// list of strings may be given whole, comma-separated
// (RELAY_STORAGE__CLICKHOUSE__URLS).
func envListItem(environ []string) string {
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		key := envKey(name)
		for _, list := range []string{"routes", "auth.keys"} {
			if key == list || strings.HasPrefix(key, list+".") {
				return name
			}
		}
		if strings.HasPrefix(key, "storage.clickhouse.urls.") {
			return name
		}
	}
	return ""
}

// serviceLink reports whether the variable rest=value (its name past the
// prefix, lower case) is one Kubernetes sets for a Service in the pod's
// namespace: relay-server's RELAY_SERVER_SERVICE_HOST,
// RELAY_SERVER_SERVICE_PORT(_NAME), RELAY_SERVER_PORT=tcp://10.0.0.1:8080,
// RELAY_SERVER_PORT_8080_TCP(_ADDR, _PORT, _PROTO). A pod beside such a
// Service could not start. RELAY_SERVER_PORT=8080 is still a typo.
func serviceLink(rest, value string) bool {
	switch {
	case strings.HasSuffix(rest, "_service_host"), strings.Contains(rest, "_service_port"):
		return true
	case strings.HasSuffix(rest, "_port"):
		return strings.HasPrefix(value, "tcp://") || strings.HasPrefix(value, "udp://") || strings.HasPrefix(value, "sctp://")
	}
	return serviceLinkPort.MatchString(rest)
}

// serviceLinkPort matches the end of Kubernetes' per-port link variables.
var serviceLinkPort = regexp.MustCompile(`_port_[0-9]+_(tcp|udp|sctp)(_addr|_port|_proto)?$`)

// envTypo refuses a RELAY_ variable that is meant as a setting but names
// none, which would be ignored without a word: one whose first level is
// no section (RELAY_SEVRER__PORT), or a section and a key joined by a
// single underscore (RELAY_SERVER_PORT). Other RELAY_ variables (the
// scripts' RELAY_CLICKHOUSE_HTTP_PORT, RELAY_TEST_REDIS_ADDR) are left
// alone.
func envTypo(environ []string) error {
	for _, kv := range environ {
		name, value, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(name, envPrefix)
		if !ok {
			continue
		}
		rest = strings.ToLower(rest)
		if top, _, nested := strings.Cut(rest, "__"); nested && !sections[top] {
			return fmt.Errorf("config: environment: %s: no setting has this name: its first level %q is none of %s", name, top, sectionList())
		}
		if strings.Contains(rest, "__") || serviceLink(rest, value) {
			continue
		}
		for sec := range sections {
			if strings.HasPrefix(rest, sec+"_") {
				return fmt.Errorf("config: environment: %s: levels are separated by a double underscore (%s%s__%s)",
					name, envPrefix, strings.ToUpper(sec), strings.ToUpper(rest[len(sec)+1:]))
			}
		}
	}
	return nil
}

// sectionList names the sections, sorted: server, auth, ...
func sectionList() string {
	names := make([]string, 0, len(sections))
	for s := range sections {
		names = append(names, s)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// Parse is Load for YAML bytes, without environment overrides (tests).
func Parse(b []byte) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(rawBytes(b), yamlText{}); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return decode(k)
}

func envKey(s string) string {
	s = strings.ToLower(strings.TrimPrefix(s, envPrefix))
	s = strings.ReplaceAll(s, "__", ".")
	top, _, _ := strings.Cut(s, ".")
	if !sections[top] || !strings.Contains(s, ".") {
		return ""
	}
	return s
}

func decode(k *koanf.Koanf) (*Config, error) {
	var c Config
	var md mapstructure.Metadata
	dc := &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			durationHook,
			wholeNumberHook,
			mapstructure.StringToSliceHookFunc(","),
		),
		// Keys the Config does not have are collected (md.Unused, full
		// paths) and refused below, all of them by name.
		Metadata:         &md,
		WeaklyTypedInput: true,
		Result:           &c,
		TagName:          "koanf",
	}
	if err := k.UnmarshalWithConf("", &c, koanf.UnmarshalConf{DecoderConfig: dc}); err != nil {
		return nil, fmt.Errorf("config: %s", cleanDecodeError(k, err))
	}
	if err := unknownKeys(md.Unused); err != nil {
		return nil, err
	}
	// An explicit 0 read as unset and became the default (100), with no
	// word; tenants' 0 is refused below.
	if k.Exists("rate_limit.default") && c.RateLimit.Default == 0 {
		return nil, &fieldError{"rate_limit.default", 0, "must be > 0 requests per minute, or -1 for unlimited (leave it out for the default, 100)"}
	}
	// The same for the port: 0 became 8080.
	if k.Exists("server.port") && c.Server.Port == 0 {
		return nil, &fieldError{"server.port", 0, "must be 1..65535 (leave it out for the default, 8080)"}
	}
	host, _ := os.Hostname()
	c.setDefaults(host)
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// durationHook turns "30s" or a plain number of seconds into a Duration and
// rejects anything else with the value in the message.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	switch v := data.(type) {
	case string:
		d, err := time.ParseDuration(v)
		if err == nil {
			return d, nil
		}
		// A plain number from the environment is seconds, as in YAML.
		if f, ferr := strconv.ParseFloat(strings.TrimSpace(v), 64); ferr == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
			return secondsDuration(f)
		}
		// 0x10, 0o17: YAML's whole numbers the file wrote so (yamlText).
		if n, ierr := strconv.ParseInt(strings.TrimSpace(v), 0, 64); ierr == nil {
			return secondsDuration(float64(n))
		}
		return nil, fmt.Errorf("%q is not a duration (e.g. 30s, 5m)", v)
	case int:
		return secondsDuration(float64(v))
	case int64:
		return secondsDuration(float64(v))
	case float64:
		return secondsDuration(v)
	}
	return data, nil
}

// wholeNumberHook refuses a number for an integer setting that is not a
// whole number, or too large for one: the weak decoding truncated 2.9 to 2
// (and 0.9 tokens a minute to 0, no budget) and wrapped 2^64-1 to -1.
func wholeNumberHook(from, to reflect.Type, data any) (any, error) {
	var bits int
	switch to.Kind() {
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64:
		bits = 64
	case reflect.Int32, reflect.Uint32:
		bits = 32
	default:
		return data, nil
	}
	if to == reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	limit := math.Ldexp(1, bits-1) // 2^63 or 2^31: past any signed value
	if v, ok := data.(string); ok {
		// A number the file wrote in a form of its own ("60.0", "1e3":
		// see yamlText) or the environment gave: a whole number written
		// as a float is that number, as when YAML read it as a float.
		s := strings.TrimSpace(v)
		if _, err := strconv.ParseInt(s, 0, 64); err == nil {
			return data, nil
		}
		if _, err := strconv.ParseUint(s, 0, 64); err == nil {
			return data, nil
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f != math.Trunc(f) {
			return data, nil // the decoder names the field and the kind
		}
		data = f // too large is said below
	}
	switch v := data.(type) {
	case float64:
		if v != math.Trunc(v) {
			return nil, fmt.Errorf("%v is not a whole number", v)
		}
		if v >= limit || v < -limit {
			return nil, fmt.Errorf("%.0f is too large", v)
		}
	case uint64:
		if float64(v) >= limit {
			return nil, fmt.Errorf("%d is too large", v)
		}
	}
	return data, nil
}

// secondsDuration is a number of seconds as a duration; one past what a
// duration holds (about 292 years) is an error, not a wrapped value (2^64 ns
// read as 290 ms).
func secondsDuration(secs float64) (time.Duration, error) {
	ns := secs * float64(time.Second)
	if math.IsNaN(ns) || ns >= math.MaxInt64 || ns <= math.MinInt64 {
		return 0, fmt.Errorf("%v seconds is not a duration this relay can hold (at most %d)", secs, int64(math.MaxInt64/int64(time.Second)))
	}
	return time.Duration(ns), nil
}

// unknownKeys is the error for keys of the file (or RELAY_* variables) that
// name no setting, by their full paths (storage.clickhouse.usr,
// routes[0].upstrem), sorted; nil when there are none.
func unknownKeys(keys []string) error {
	switch len(keys) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("config: unknown key %s", keys[0])
	}
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return fmt.Errorf("config: unknown keys %s", strings.Join(keys, ", "))
}

func cleanDecodeError(k *koanf.Koanf, err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "decoding failed due to the following error(s):\n\n")
	return numberValues.ReplaceAllStringFunc(strings.ReplaceAll(s, "\n", "; "), func(m string) string {
		// A field that wants a number or a bool says what it got: such a
		// value is no secret (strings, where keys and tokens go, are
		// never shown).
		sub := numberValues.FindStringSubmatch(m)
		if v := k.Get(sub[1]); v != nil {
			return fmt.Sprintf("%s=%q: must be %s (%s)", sub[1], fmt.Sprint(v), kindWord(sub[2]), sub[2])
		}
		return m
	})
}

// numberValues matches mapstructure's error for a field of a number or
// bool type given text it cannot read, up to its reason.
var numberValues = regexp.MustCompile(`'([a-z0-9_.]+)' cannot parse value as '((?:u?int|float)(?:8|16|32|64)?|bool)': [^;]*`)

// kindWord names what a Go kind of a setting wants.
func kindWord(kind string) string {
	switch {
	case kind == "bool":
		return "true or false"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	}
	return "a whole number"
}

func (c *Config) validate() error {
	s := c.Server
	if s.Port < 0 || s.Port > 65535 {
		return &fieldError{"server.port", s.Port, "must be 1..65535"}
	}
	if strings.ContainsAny(s.Host, "[]/ ") || strings.Count(s.Host, ":") == 1 {
		// "[::1]" failed at listen, its error naming server.port.
		return &fieldError{"server.host", s.Host, "must be a host name or an address without brackets or port (::1, 127.0.0.1, 0.0.0.0)"}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"server.timeout", s.Timeout}, {"server.read_timeout", s.ReadTimeout},
		{"server.idle_timeout", s.IdleTimeout}, {"server.shutdown_grace", s.ShutdownGrace},
		{"storage.clickhouse.flush_interval", c.Storage.ClickHouse.FlushInterval},
		{"storage.clickhouse.insert_timeout", c.Storage.ClickHouse.InsertTimeout},
	} {
		if d.v < 0 {
			return &fieldError{d.name, d.v, "must not be negative"}
		}
	}
	if fi := c.Storage.ClickHouse.FlushInterval; fi > 0 && fi < minFlushInterval {
		// A ticker this fast spins a core with nothing to flush.
		return &fieldError{"storage.clickhouse.flush_interval", fi, "must be at least 10ms (0: the default)"}
	}
	if s.MaxBodyBytes < 0 {
		return &fieldError{"server.max_body_bytes", s.MaxBodyBytes, "must not be negative"}
	}
	ch := c.Storage.ClickHouse
	for _, n := range []struct {
		name string
		v    int64
	}{
		{"storage.clickhouse.batch_rows", int64(ch.BatchRows)}, {"storage.clickhouse.batch_bytes", int64(ch.BatchBytes)},
		{"storage.clickhouse.spool_max_bytes", ch.SpoolMaxBytes}, {"storage.clickhouse.ttl_days", int64(ch.TTLDays)},
	} {
		if n.v < 0 {
			return &fieldError{n.name, n.v, "must not be negative (0: the default)"}
		}
	}
	if s.GCPercent < 0 {
		return &fieldError{"server.gc_percent", s.GCPercent, "must be > 0 (Go's own default is 100), or 0 for the default 25"}
	}
	if s.DetachAbove != nil && *s.DetachAbove < 0 {
		return &fieldError{"server.detach_above", *s.DetachAbove, "must not be negative (0: every stream is detached)"}
	}
	for i, p := range s.TrustedProxies {
		if _, err := handlers.ParseProxies([]string{p}); err != nil {
			return &fieldError{fmt.Sprintf("server.trusted_proxies[%d]", i), p, "must be an IP address or a CIDR prefix (10.0.0.0/8)"}
		}
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return &fieldError{"server.tls_cert", s.TLSCert, "tls_cert and tls_key go together"}
	}
	if err := c.validateRoutes(); err != nil {
		return err
	}
	if err := c.validateKeys(); err != nil {
		return err
	}
	rl := c.RateLimit
	if err := rl.checkMax(); err != nil {
		return err
	}
	if rl.Default < 0 && rl.Default != quota.Unlimited {
		return &fieldError{"rate_limit.default", rl.Default, "must be > 0 requests per minute, or -1 for unlimited"}
	}
	if rl.Burst < 0 {
		return &fieldError{"rate_limit.burst", rl.Burst, "must not be negative"}
	}
	for t, v := range rl.Tenants {
		if v <= 0 && v != quota.Unlimited {
			return &fieldError{"rate_limit.tenants." + t, v, "must be > 0 requests per minute, or -1 for unlimited"}
		}
	}
	if rl.TokensPerMinute < 0 {
		return &fieldError{"rate_limit.tokens_per_minute", rl.TokensPerMinute, "must not be negative"}
	}
	for _, t := range slices.Sorted(maps.Keys(rl.TenantTokens)) {
		if v := rl.TenantTokens[t]; v < 0 {
			return &fieldError{"rate_limit.tenant_tokens." + t, v, "must be >= 0 (0 = off)"}
		}
	}
	if rl.Lease < 0 || rl.Lease > maxLease {
		return &fieldError{"rate_limit.lease", rl.Lease, "must be 1..1000000 (1 = off), or 0 for the default 16"}
	}
	if rl.LeaseMax < 0 || rl.LeaseMax > 16*maxLease {
		return &fieldError{"rate_limit.lease_max", rl.LeaseMax, "must be at most 16000000, or 0 for 16 × lease"}
	}
	if rl.RedisTimeout < 0 {
		return &fieldError{"rate_limit.redis_timeout", rl.RedisTimeout, "must not be negative (0: the default 50ms)"}
	}
	if rl.LeaseTTL < 0 {
		return &fieldError{"rate_limit.lease_ttl", rl.LeaseTTL, "must not be negative"}
	}
	lease := rl.Lease
	if lease == 0 {
		lease = quota.DefaultLease
	}
	if rl.LeaseRenewBelow < -1 || lease > 1 && rl.LeaseRenewBelow >= lease {
		return &fieldError{"rate_limit.lease_renew_below", rl.LeaseRenewBelow, "must be below rate_limit.lease, -1 for no renewals, or 0 for lease/4"}
	}
	if rl.LeaseMax != 0 && rl.LeaseMax < lease {
		return &fieldError{"rate_limit.lease_max", rl.LeaseMax, "must be >= rate_limit.lease, or 0 for 16 × lease"}
	}
	switch rl.OnRedisError {
	case "local", "allow", "deny":
	default:
		return &fieldError{"rate_limit.on_redis_error", rl.OnRedisError, "must be local, allow or deny"}
	}
	switch c.Storage.ClickHouse.Compression {
	case "", "auto", "lz4", "none":
	default:
		return &fieldError{"storage.clickhouse.compression", c.Storage.ClickHouse.Compression, "must be auto, lz4 or none"}
	}
	switch c.Storage.ClickHouse.Durability {
	case "", "batch", "wal":
	default:
		return &fieldError{"storage.clickhouse.durability", c.Storage.ClickHouse.Durability, "must be batch or wal"}
	}
	if c.Storage.OnOverload != "degrade" {
		return &fieldError{"storage.on_overload", c.Storage.OnOverload, "must be degrade"}
	}
	if n := c.Storage.MaxBufferBytes; n < 0 || n > 0 && n < chlog.MinBufferBytes {
		return &fieldError{"storage.max_buffer_bytes", n, fmt.Sprintf("must be at least %d (0: a quarter of memory, at most 1 GiB)", chlog.MinBufferBytes)}
	}
	if db := c.Storage.ClickHouse.Database; !chlog.ValidIdent(db) {
		return &fieldError{"storage.clickhouse.database", strconv.Quote(db), chlog.IdentRule}
	}
	if t := c.Storage.ClickHouse.Table; t != "" && !chlog.ValidIdent(t) {
		return &fieldError{"storage.clickhouse.table", strconv.Quote(t), chlog.IdentRule + " (empty: stream_logs)"}
	}
	if a := c.Storage.Redis.Addr; a != "" {
		if _, err := quota.ParseRedisAddr(a); err != nil {
			return &fieldError{"storage.redis.addr", quota.ShownRedisAddr(a), err.Error() + ` (host:port, or host:port,host:port,... for a Redis Cluster)`}
		}
	}
	if u := c.Storage.ClickHouse.URL; u != "" {
		if err := checkHTTPURL(u); err != nil {
			if a := c.Storage.ClickHouse.Addr; a != "" && u == ClickHouseURLFromAddr(a) {
				// The url was made from addr (setDefaults): name what was set.
				// User info, a query and a fragment may hold a password (which
				// may hold '?', '#' or '@' itself): all but the host part after
				// the last '@', and that up to a '?' or '#', is hidden.
				shown := a
				if i := strings.LastIndexByte(shown, '@'); i >= 0 {
					shown = shown[i+1:]
				}
				shown, _, _ = strings.Cut(shown, "?")
				shown, _, _ = strings.Cut(shown, "#")
				if shown != a {
					shown = "redacted:" + shown
				}
				return &fieldError{"storage.clickhouse.addr", shown, "must be host:port (the relay uses that host's HTTP port, 8123; or set storage.clickhouse.url)"}
			}
			return &fieldError{"storage.clickhouse.url", shownURL(u), err.Error()}
		}
	}
	if err := checkClickHouseNodes(&c.Storage.ClickHouse); err != nil {
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return &fieldError{"log.level", c.Log.Level, "must be debug, info, warn or error"}
	}
	if c.Metrics.PProf && c.Metrics.Addr == "" {
		return &fieldError{"metrics.pprof", true, "needs metrics.addr: profiles are never served on the relay's public port"}
	}
	if err := c.checkMetricsAddr(); err != nil {
		return err
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return &fieldError{"log.format", c.Log.Format, "must be text or json"}
	}
	return nil
}

func (c *Config) validateRoutes() error {
	if len(c.Routes) == 0 {
		return &fieldError{"routes", "[]", "at least one route is required"}
	}
	names := map[string]bool{}
	paths := map[string]bool{}
	for i, r := range c.Routes {
		f := func(name string) string { return fmt.Sprintf("routes[%d].%s", i, name) }
		if r.Name == "" {
			return &fieldError{f("name"), `""`, "required"}
		}
		if names[r.Name] {
			return &fieldError{f("name"), r.Name, "duplicate route name"}
		}
		if r.Name == telemetry.Unmatched {
			// The metrics' route label of requests no route matched.
			return &fieldError{f("name"), r.Name, "reserved: the metrics label of requests no route matched"}
		}
		names[r.Name] = true
		if !strings.HasPrefix(r.Path, "/") {
			return &fieldError{f("path"), r.Path, `must start with "/"`}
		}
		if strings.Contains(strings.TrimSuffix(r.Path, "/*"), "*") || strings.ContainsAny(r.Path, ":?#") {
			return &fieldError{f("path"), r.Path, `only a trailing "/*" wildcard is allowed`}
		}
		if !normalizedPath(strings.TrimSuffix(r.Path, "/*")) || strings.HasSuffix(r.Path, "//*") {
			return &fieldError{f("path"), r.Path, `must be a normalized path (no "//", no "." or ".." segment, no %-escape): requests are matched after normalization, so it would match none`}
		}
		if paths[r.Path] {
			return &fieldError{f("path"), r.Path, "duplicate path"}
		}
		paths[r.Path] = true
		// The kind first: a misspelled kind on a ws route made its wss://
		// upstream the field named.
		switch r.Kind {
		case "sse", "raw", "ws":
		default:
			return &fieldError{f("kind"), r.Kind, "must be sse, raw or ws"}
		}
		if err := checkEnvName(f("auth_env"), r.AuthEnv); err != nil {
			return err
		}
		if err := checkMethods(f("methods"), r.Kind, r.Methods); err != nil {
			return err
		}
		if len(r.Upstreams) > 0 {
			if err := r.validateUpstreams(f); err != nil {
				return err
			}
		} else if err := checkHTTPURL(wsAsHTTP(r.Kind, r.Upstream)); err != nil {
			return &fieldError{f("upstream"), shownURL(r.Upstream), err.Error()}
		}
		if err := r.validateFailover(f); err != nil {
			return err
		}
		if err := checkAuthQuery(r.Kind, r.AuthQuery); err != nil {
			return &fieldError{f("auth_query"), r.AuthQuery, err.Error()}
		}
		switch r.Capture {
		case "full", "meta":
		default:
			return &fieldError{f("capture"), r.Capture, "must be full or meta"}
		}
		if r.AuthHeader != "" && !validHeaderName(r.AuthHeader) {
			return &fieldError{f("auth_header"), r.AuthHeader, "not a valid header name"}
		}
		if r.AuthHeader != "" && upstream.FramingHeader(r.AuthHeader) {
			return &fieldError{f("auth_header"), r.AuthHeader, "names a field the relay sets or drops itself (Host, Content-Length, Transfer-Encoding, Connection ...): the key would go nowhere, or into access logs"}
		}
		if err := r.checkSetHeaders(f); err != nil {
			return err
		}
		for _, set := range []struct {
			name string
			m    map[string]string
		}{{"headers", r.Headers}, {"set_headers", r.SetHeaders}} {
			for h, v := range set.m {
				if !validHeaderName(h) {
					return &fieldError{f(set.name), h, "not a valid header name"}
				}
				for other := range set.m {
					if other != h && strings.EqualFold(other, h) {
						// One of the two went upstream, a different one
						// from one start to the next (map order).
						a, b := min(h, other), max(h, other)
						return &fieldError{f(set.name), a + ", " + b, "the same header name twice (names are case-insensitive): keep one"}
					}
				}
				if upstream.FramingHeader(h) && !strings.EqualFold(h, "host") {
					// Forwarded as a field of the upstream connection
					// (Upgrade, Te, Connection) or dropped (Content-Length,
					// Transfer-Encoding), either way without a word.
					return &fieldError{f(set.name), h, "names a field of the connection the relay sets or drops itself (Connection, Upgrade, Te, Content-Length, Transfer-Encoding ...): it is not the route's to send"}
				}
				if strings.ContainsAny(v, "\r\n\x00") {
					return &fieldError{f(set.name + "." + h), "<value>", "contains CR, LF or NUL"}
				}
			}
		}
		for _, d := range []struct {
			name string
			v    time.Duration
		}{{"connect_timeout", r.ConnectTimeout}, {"first_byte_timeout", r.FirstByteTimeout}, {"idle_timeout", r.IdleTimeout}} {
			if d.v < 0 {
				return &fieldError{f(d.name), d.v, "must not be negative"}
			}
		}
		if r.MaxBodyBytes < 0 {
			return &fieldError{f("max_body_bytes"), r.MaxBodyBytes, "must not be negative"}
		}
		if r.MaxConns < 0 {
			return &fieldError{f("max_conns"), r.MaxConns, "must not be negative"}
		}
		if n := r.ReadBufferBytes; n != 0 && (n < upstream.MinReadBufferBytes || n > upstream.MaxReadBufferBytes) {
			return &fieldError{f("read_buffer_bytes"), n, fmt.Sprintf("must be %d..%d (0: the default)", upstream.MinReadBufferBytes, upstream.MaxReadBufferBytes)}
		}
		if r.MaxCaptureBytes < 0 {
			return &fieldError{f("max_capture_bytes"), r.MaxCaptureBytes, "must not be negative"}
		}
	}
	return nil
}

func (c *Config) validateKeys() error {
	seen := map[string]bool{}
	for i, k := range c.Auth.Keys {
		f := func(name string) string { return fmt.Sprintf("auth.keys[%d].%s", i, name) }
		switch {
		case k.Key == "" && k.KeySHA256 == "":
			return &fieldError{f("key"), `""`, "key or key_sha256 is required"}
		case k.Key != "" && k.KeySHA256 != "":
			return &fieldError{f("key_sha256"), "<set>", "give key or key_sha256, not both"}
		case strings.TrimSpace(k.Key) != k.Key:
			// Callers' keys are read without surrounding white space: such
			// a key could never match.
			return &fieldError{f("key"), "<set>", "must not begin or end with white space"}
		case k.KeySHA256 != "":
			if b, err := hex.DecodeString(k.KeySHA256); err != nil || len(b) != 32 {
				return &fieldError{f("key_sha256"), "<set>", "must be 64 hex characters"}
			}
		}
		if k.Tenant == "" {
			return &fieldError{f("tenant"), `""`, "required"}
		}
		// A tenant names its Redis keys' hash tag ({tenant}): a brace in
		// it would split the tag, and the limiter would take another
		// tenant's override changes for its own.
		if strings.ContainsAny(k.Tenant, "{}") {
			return &fieldError{f("tenant"), k.Tenant, "must not contain '{' or '}'"}
		}
		// X-Tenant-ID arrives trimmed: a tenant with white space around
		// it could never be chosen (403), its own key's included.
		if strings.TrimSpace(k.Tenant) != k.Tenant {
			return &fieldError{f("tenant"), strconv.Quote(k.Tenant), "must not begin or end with white space"}
		}
		for j, tn := range k.Tenants {
			if strings.TrimSpace(tn) == "" || strings.ContainsAny(tn, "{}") || strings.TrimSpace(tn) != tn {
				return &fieldError{f(fmt.Sprintf("tenants[%d]", j)), strconv.Quote(tn), "must be non-empty, without '{' or '}' or white space around it"}
			}
		}
		if k.RateLimit > quota.MaxLimit {
			return &fieldError{f("rate_limit"), k.RateLimit, "must be at most 10^12"}
		}
		if k.RateLimit < 0 {
			return &fieldError{f("rate_limit"), k.RateLimit, "must not be negative"}
		}
		// A key and another entry's key_sha256 of it are the same key:
		// compared as hashes (one entry would silently replace the other).
		id := strings.ToLower(k.KeySHA256)
		if k.Key != "" {
			sum := sha256.Sum256([]byte(k.Key))
			id = hex.EncodeToString(sum[:])
		}
		if seen[id] {
			return &fieldError{f("key"), "<set>", "duplicate key (the same key, or its key_sha256, is listed before)"}
		}
		seen[id] = true
	}
	return nil
}

// checkClickHouseNodes validates storage.clickhouse.urls and cluster.
func checkClickHouseNodes(ch *ClickHouseConfig) error {
	seen := map[string]bool{}
	for i, u := range ch.URLs {
		f := "storage.clickhouse.urls[" + strconv.Itoa(i) + "]"
		if err := checkHTTPURL(u); err != nil {
			return &fieldError{f, shownURL(u), err.Error()}
		}
		if seen[chlog.NodeKey(u)] {
			return &fieldError{f, shownURL(u), "listed twice"}
		}
		seen[chlog.NodeKey(u)] = true
	}
	if ch.URL != "" && len(ch.URLs) > 0 && !seen[chlog.NodeKey(ch.URL)] {
		return &fieldError{"storage.clickhouse.url", shownURL(ch.URL), "not among storage.clickhouse.urls: set urls alone"}
	}
	if ch.Cluster == "" {
		return nil
	}
	if !chlog.ValidIdent(ch.Cluster) {
		return &fieldError{"storage.clickhouse.cluster", ch.Cluster, chlog.IdentRule}
	}
	if ch.URL == "" && len(ch.URLs) == 0 {
		return &fieldError{"storage.clickhouse.cluster", ch.Cluster, "needs storage.clickhouse.urls: the nodes to talk to"}
	}
	return nil
}

// normalizedPath reports whether p is a path as requests are matched:
// no empty, "." or ".." segment and no %-escape (fasthttp decodes and
// resolves those before the route is looked up).
func normalizedPath(p string) bool {
	if strings.Contains(p, "%") || strings.Contains(p, "//") {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

func checkHTTPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("must be an absolute http or https URL")
	}
	if u.Host == "" {
		return errors.New("has no host")
	}
	if strings.HasSuffix(u.Host, ":") {
		return errors.New("has an empty port") // host: would be dialed as host::443
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return errors.New("has port " + p + ": must be 1..65535")
		}
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return errors.New("must not carry a query, fragment or user info")
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !ok {
			return false
		}
	}
	return true
}

// parseEnvFile parses the .env file at path, whose bytes are b; its error
// names the line that does not parse, not its value (envFileProblem).
func parseEnvFile(path string, b []byte) (map[string]any, error) {
	m, err := dotenv.Parser().Unmarshal(b)
	if _, noName := m[""]; err != nil || noName {
		// noName: a last line of words without "=" and without a line
		// end, which the parser takes as a value with no name.
		return nil, fmt.Errorf("config: env file %s: %s", path, envFileProblem(b))
	}
	return m, nil
}

// envFileProblem says where a .env file the parser refused goes wrong
// without quoting it: the parser's own message quotes the line, and a .env
// file holds provider keys. It names the first line that does not parse on
// its own, and the variable it sets when that much is readable.
func envFileProblem(b []byte) string {
	for i, line := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		// A line of words without "=" parses alone as a value with no
		// name (the parser reads a name up to "=" across spaces).
		if m, err := dotenv.Parser().Unmarshal([]byte(line)); err == nil && m[""] == nil {
			continue
		}
		// Without "=" the line may be a bare key (ghp_..., sk_live_...),
		// which would pass for a name: it is never shown.
		name, _, hasEq := strings.Cut(strings.TrimPrefix(t, "export "), "=")
		name = strings.TrimSpace(name)
		if !hasEq || !validEnvName(name) {
			return fmt.Sprintf("line %d: not NAME=VALUE (the line is not shown: it may hold a key)", i+1)
		}
		return fmt.Sprintf("line %d (%s): the value does not parse, a quote not closed perhaps (it is not shown: it may hold a key)", i+1, name)
	}
	return "does not parse (a quoted value over several lines not closed, perhaps; the parser's message is not shown: it may quote a key)"
}

// checkEnvName refuses an auth_env (field) that cannot be the name of the
// variable holding a provider key, but the key itself, pasted in its
// place: one beginning as providers' keys do (keyPrefixes), or with a
// character no variable name in a Kubernetes Secret or a Docker env file
// has (letters, digits, '_', '-' and '.', not beginning with a digit: envFrom
// makes variables such as openai-api-key). The value is not shown: the
// error goes to the log.
func checkEnvName(field, name string) error {
	if name == "" || envFromName(name) && !looksLikeKey(name) {
		return nil
	}
	return fmt.Errorf("config: %s: must name the environment variable that holds the provider key "+
		"(letters, digits, _, - and ., not beginning with a digit), not hold the key: the value is not shown", field)
}

// keyPrefixes begin providers' API keys (OpenAI, Anthropic, Google, xAI,
// Groq, Perplexity, Replicate, Hugging Face).
var keyPrefixes = []string{"sk-", "sk_", "AIza", "xai-", "gsk_", "pplx-", "r8_", "hf_"}

func looksLikeKey(s string) bool {
	for _, p := range keyPrefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// envFromName reports whether s is a name Kubernetes accepts for an
// environment variable (and so may be set by envFrom from a Secret's key).
func envFromName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c == '-' || c == '.' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// validEnvName reports whether s is a shell variable name.
func validEnvName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// rawBytes is a koanf provider over bytes already in memory.
type rawBytes []byte

func (b rawBytes) ReadBytes() ([]byte, error) { return b, nil }
func (b rawBytes) Read() (map[string]any, error) {
	return nil, errors.New("rawBytes provider does not support Read")
}

// checkMetricsAddr refuses a metrics.addr that is not host:port, or that
// is the relay's own listening address (server.host:server.port): the
// second listener would fail to bind, and the error would not say which.
func (c *Config) checkMetricsAddr() error {
	addr := c.Metrics.Addr
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return &fieldError{"metrics.addr", addr, `must be host:port (":9090": every interface)`}
	}
	p, err := net.LookupPort("tcp", port)
	if err != nil {
		return &fieldError{"metrics.addr", addr, "not a port: " + port}
	}
	if p == 0 {
		// An ephemeral port nobody is told of: Prometheus could not find it.
		return &fieldError{"metrics.addr", addr, "needs a fixed port (1..65535)"}
	}
	if p != c.Server.Port || !sameListenHost(host, c.Server.Host) {
		return nil
	}
	own := net.JoinHostPort(c.Server.Host, strconv.Itoa(c.Server.Port))
	return &fieldError{"metrics.addr", addr, "is the relay's own address (server.host:server.port " + own +
		"): give metrics another port, or leave metrics.addr empty to serve /metrics on the relay's port"}
}

// sameListenHost reports whether listeners on hosts a and b (a
// listening address's host part) would take the same port: one of them is
// every interface ("", 0.0.0.0, ::), or both are one address however it is
// written (localhost is 127.0.0.1, where Go listens for it).
func sameListenHost(a, b string) bool {
	ip := func(h string) net.IP {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if h == "localhost" {
			return net.IPv4(127, 0, 0, 1)
		}
		return net.ParseIP(h)
	}
	x, y := ip(a), ip(b)
	switch {
	case a == "" || b == "" || x != nil && x.IsUnspecified() || y != nil && y.IsUnspecified():
		return true
	case x != nil && y != nil:
		return x.Equal(y)
	}
	return strings.EqualFold(a, b)
}

// checkMax refuses a rate, burst or token budget above quota.MaxLimit, by
// its field, at load (and on SIGHUP) rather than when the limiter is made.
func (rl RateLimitConfig) checkMax() error {
	const why, orUnlimited = "must be at most 10^12", "must be at most 10^12 (-1: unlimited)"
	for _, f := range []struct {
		name, why string
		v         int64
	}{{"rate_limit.default", orUnlimited, int64(rl.Default)}, {"rate_limit.burst", why, int64(rl.Burst)}, {"rate_limit.tokens_per_minute", why, rl.TokensPerMinute}} {
		if f.v > quota.MaxLimit {
			return &fieldError{f.name, f.v, f.why}
		}
	}
	for _, t := range slices.Sorted(maps.Keys(rl.Tenants)) {
		if v := rl.Tenants[t]; v > quota.MaxLimit {
			return &fieldError{"rate_limit.tenants." + t, v, orUnlimited}
		}
	}
	for _, t := range slices.Sorted(maps.Keys(rl.TenantTokens)) {
		if v := rl.TenantTokens[t]; v > quota.MaxLimit {
			return &fieldError{"rate_limit.tenant_tokens." + t, v, why}
		}
	}
	return nil
}

// routeMethods are the methods a route may relay (TRACE and CONNECT are
// refused on every route).
var routeMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// checkMethods refuses a route's methods that name no relayed method, and
// any on a ws route, whose handshake is a GET.
func checkMethods(field, kind string, methods []string) error {
	if methods == nil {
		return nil
	}
	if len(methods) == 0 {
		return &fieldError{field, "[]", "must name at least one method (leave it out for the default)"}
	}
	if kind == "ws" {
		return &fieldError{field, strings.Join(methods, ","), "a ws route takes GET handshakes only: leave methods out"}
	}
	for _, m := range methods {
		if !slices.Contains(routeMethods, m) {
			return &fieldError{field, m, "must be one of " + strings.Join(routeMethods, ", ") + " (upper case)"}
		}
	}
	return nil
}

// checkSetHeaders refuses a set_headers entry in the provider key's place:
// the route's auth_header while every request of the route sends a key
// (auth_env on the route or on every target), or on a ws route with
// auth_query (that header is dropped from its handshake). The key would
// replace it without a word. In a pool whose targets are keyed and not,
// the entry goes to those without a key (a self-hosted one's token).
func (r *RouteConfig) checkSetHeaders(f func(string) string) error {
	keyed := r.AuthEnv != "" || r.AuthQuery != ""
	if !keyed && len(r.Upstreams) > 0 {
		keyed = true
		for _, u := range r.Upstreams {
			keyed = keyed && u.AuthEnv != ""
		}
	}
	if !keyed {
		return nil
	}
	for h := range r.SetHeaders {
		if strings.EqualFold(h, r.AuthHeader) {
			return &fieldError{f("set_headers"), h, "is the route's auth_header, where its provider key goes (auth_env or auth_query): the key would replace it"}
		}
	}
	return nil
}
