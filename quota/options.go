package quota

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"
)

// Unlimited is the requests-per-minute value that turns a request bucket off:
// Options.Default, an Options.Tenants entry or the rpm field of a tenant's
// Redis override hash may be set to it.
const Unlimited = -1

// MaxLimit is the largest rate, burst or token budget a limit may have, in
// the file or an override: a trillion a minute. The buckets count in
// micro-tokens, and past about 9 * 10^12 their levels (and the
// X-RateLimit-* headers) no longer come out right; -1 is for no limit.
const MaxLimit = 1_000_000_000_000

// Fallback policies for Options.OnRedisError.
const (
	OnErrorLocal = "local"
	OnErrorAllow = "allow"
	OnErrorDeny  = "deny"
)

// Options configures a Limiter. The zero value of every field means its
// default; New applies the defaults and rejects invalid values with an
// *OptionError naming the field.
type Options struct {
	// RedisAddr is "host:port", or several comma-separated addresses of a
	// Redis Cluster. Default "": buckets live in process (embedded mode).
	RedisAddr string
	// RedisPassword authenticates to Redis. It is never logged.
	RedisPassword string

	// Default is the request rate per tenant in requests per minute.
	// Default 100. Unlimited (-1) turns the request bucket off; other values
	// below 1 are rejected.
	Default int
	// Burst is the capacity of every request bucket: how many requests an
	// idle tenant may send at once. Default 0: each bucket holds one minute's
	// worth of its own rate (so a tenant override of 600/min bursts 600). A
	// tenant's Redis override hash may set its own burst.
	Burst int
	// Tenants overrides Default per tenant (requests per minute, or
	// Unlimited). Values in the tenant's Redis hash win over these.
	Tenants map[string]int
	// Keys limits single relay keys, by the key id the relay computes, in
	// requests per minute. A key's bucket applies in addition to its
	// tenant's: a request is admitted only when both have a token, so a key
	// limit can narrow a tenant's budget but never widen it.
	Keys map[string]int

	// TokensPerMinute is the default per-tenant token budget that Debit
	// drains. Default 0: no token budget.
	TokensPerMinute int64
	// TenantTokens overrides TokensPerMinute per tenant; 0 turns the budget
	// off for that tenant.
	TenantTokens map[string]int64

	// OnRedisError decides requests while Redis is unreachable or slower than
	// Timeout: "local" (default) runs in-process buckets with the same
	// limits, "allow" admits everything, "deny" refuses everything.
	OnRedisError string
	// Timeout bounds one Redis decision before the limiter falls back.
	// Default 50ms: Redis on the same network answers in well under a
	// millisecond, so 50ms rides out GC pauses and a busy server without
	// flapping, while a dead or blackholed Redis costs the requests in flight
	// at most 50ms once: after the first failure the limiter decides by
	// OnRedisError without waiting and a background probe finds Redis again.
	Timeout time.Duration
	// ProbeInterval is how often the background probe checks, while the
	// limiter is in fallback, whether Redis can decide again (it runs the
	// bucket script on a probe key: probe.go). Default 1s.
	ProbeInterval time.Duration
	// SwitchLogQuiet is how long after a warning that Redis is unavailable
	// further switches to the fallback are logged at debug level, as long
	// as the next probe finds Redis again (switchlog.go): a busy host's
	// missed deadlines do not fill the log. Default 1m.
	SwitchLogQuiet time.Duration
	// CacheTTL bounds how long a tenant's override hash and "not blocked"
	// answer are served from the client-side cache. Redis invalidates them as
	// soon as they change; the TTL only limits staleness if an invalidation is
	// lost. Default 30s.
	CacheTTL time.Duration
	// Lease is how many request tokens one Redis decision may take at once
	// for a tenant (and relay key): the script debits them together and the
	// relay admits the next Lease-1 requests of that tenant and key without
	// a Redis round trip. The script leases only while the buckets stay at
	// least half full after the debit, so near the limit every request is
	// decided by Redis, exactly. Default DefaultLease; 1 turns leases off.
	Lease int
	// LeaseTTL is how long a lease's tokens may be used. Unused ones are then
	// given back to the bucket (capped at its capacity). A lease is also
	// dropped and given back as soon as the tenant's override hash or
	// blocked-until key changes in Redis. Default 1s.
	LeaseTTL time.Duration
	// RenewBelow renews a lease in the background when a leased admission
	// leaves it this many tokens or fewer, and the lease went that far in
	// less than half its LeaseTTL (a tenant that uses its leases up; a slow
	// one lets them expire): one script run takes the next lease while the
	// last tokens of this one are used, so a busy tenant's requests never
	// wait for Redis. The renewal takes tokens only while the buckets stay
	// at least half full, as a lease does, and it refuses no request: near
	// the limit requests are decided by Redis one by one as before.
	// Default Lease/4 (at least 1); -1 turns renewals off. A lease grown
	// past Lease (LeaseMax) is renewed at the same fraction of its size.
	RenewBelow int
	// LeaseMax is the most tokens a busy tenant's lease grows to. A lease
	// starts at Lease tokens; one used down to its renewal point within an
	// eighth of LeaseTTL doubles for the next grant or renewal, up to
	// LeaseMax, and one that expires with more than half its tokens unused
	// halves, down to Lease. At a few thousand requests per second a lease
	// of 16 lasts a few milliseconds, less than a renewal's round trip on a
	// busy machine: the tenant's requests waited for Redis again. Default
	// 16 × Lease; Lease keeps every lease at Lease tokens.
	LeaseMax int
	// KeyPrefix starts every Redis key. Default "relay:rl:". It must not
	// contain '{' or '}', which would break the per-tenant hash tag.
	KeyPrefix string

	// Logger receives the fallback switches. Default slog.Default().
	Logger *slog.Logger
}

// DefaultLease is Options.Lease when it is 0.
const DefaultLease = 16

// leaseGrowth is Options.LeaseMax's default in multiples of Lease.
const leaseGrowth = 16

// OptionError reports an invalid Options field. Field uses the name of the
// configuration key (rate_limit.<field>).
type OptionError struct {
	Field  string
	Value  any
	Reason string
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("quota: %s=%v: %s", e.Field, e.Value, e.Reason)
}

func (o *Options) setDefaults() {
	if o.Default == 0 {
		o.Default = 100
	}
	if o.OnRedisError == "" {
		o.OnRedisError = OnErrorLocal
	}
	if o.Timeout == 0 {
		o.Timeout = 50 * time.Millisecond
	}
	if o.ProbeInterval == 0 {
		o.ProbeInterval = time.Second
	}
	if o.SwitchLogQuiet == 0 {
		o.SwitchLogQuiet = time.Minute
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = 30 * time.Second
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "relay:rl:"
	}
	if o.Lease == 0 {
		o.Lease = DefaultLease
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = time.Second
	}
	if o.RenewBelow == 0 {
		o.RenewBelow = max(o.Lease/4, 1)
	}
	if o.LeaseMax == 0 {
		o.LeaseMax = leaseGrowth * o.Lease
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// validate runs after setDefaults.
func (o *Options) validate() error {
	if err := o.validateMax(); err != nil {
		return err
	}
	const rpmReason = "must be > 0, or -1 for unlimited"
	if o.Default < 1 && o.Default != Unlimited {
		return &OptionError{"default", o.Default, rpmReason}
	}
	if o.Burst < 0 {
		return &OptionError{"burst", o.Burst, "must be >= 0 (0 = one minute's worth of the rate)"}
	}
	for name, v := range o.Tenants {
		if v < 1 && v != Unlimited {
			return &OptionError{"tenants." + name, v, rpmReason}
		}
	}
	for id, v := range o.Keys {
		if v < 1 {
			return &OptionError{"keys." + id, v, "must be > 0"}
		}
	}
	if o.TokensPerMinute < 0 {
		return &OptionError{"tokens_per_minute", o.TokensPerMinute, "must be >= 0 (0 = off)"}
	}
	for name, v := range o.TenantTokens {
		if v < 0 {
			return &OptionError{"tenant_tokens." + name, v, "must be >= 0 (0 = off)"}
		}
	}
	switch o.OnRedisError {
	case OnErrorLocal, OnErrorAllow, OnErrorDeny:
	default:
		return &OptionError{"on_redis_error", o.OnRedisError, `must be "local", "allow" or "deny"`}
	}
	if o.Timeout < 0 {
		return &OptionError{"timeout", o.Timeout, "must be > 0"}
	}
	if o.ProbeInterval < 0 {
		return &OptionError{"probe_interval", o.ProbeInterval, "must be > 0"}
	}
	if o.SwitchLogQuiet < 0 {
		return &OptionError{"switch_log_quiet", o.SwitchLogQuiet, "must be > 0"}
	}
	if o.CacheTTL < 0 {
		return &OptionError{"cache_ttl", o.CacheTTL, "must be > 0"}
	}
	if o.Lease < 0 {
		return &OptionError{"lease", o.Lease, "must be >= 1 (1 = off)"}
	}
	if o.LeaseTTL < 0 {
		return &OptionError{"lease_ttl", o.LeaseTTL, "must be > 0"}
	}
	if o.LeaseMax < o.Lease {
		return &OptionError{"lease_max", o.LeaseMax, "must be >= lease"}
	}
	if o.RenewBelow < -1 || o.RenewBelow >= o.Lease && o.Lease > 1 {
		return &OptionError{"lease_renew_below", o.RenewBelow, "must be below lease, or -1 for no renewals"}
	}
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		return &OptionError{"key_prefix", o.KeyPrefix, "must not contain '{' or '}'"}
	}
	if o.RedisAddr != "" {
		if _, err := ParseRedisAddr(o.RedisAddr); err != nil {
			return &OptionError{"redis_addr", ShownRedisAddr(o.RedisAddr), err.Error()}
		}
	}
	return nil
}

// ParseRedisAddr splits a RedisAddr ("host:port", or several
// comma-separated addresses of a Redis Cluster) into its addresses, spaces
// around each trimmed. An empty address in the list, or one that is not
// host:port (a redis:// URL, whose password belongs in the password
// setting), is an error; the error never quotes the address, which may
// hold a password.
func ParseRedisAddr(s string) ([]string, error) {
	parts := strings.Split(s, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
		if parts[i] == "" {
			return nil, errors.New("empty address in list")
		}
		if strings.Contains(parts[i], "://") || strings.Contains(parts[i], "@") {
			return nil, fmt.Errorf("address %d is a URL, not host:port (a password goes in the password setting)", i+1)
		}
		_, port, err := net.SplitHostPort(parts[i])
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("address %d is not host:port", i+1)
		}
	}
	return parts, nil
}

// ShownRedisAddr is s as errors and logs may show it: s itself when it is
// a valid RedisAddr, "[invalid]" otherwise (it may hold a password).
func ShownRedisAddr(s string) string {
	if _, err := ParseRedisAddr(s); err != nil {
		return "[invalid]"
	}
	return s
}

// addrs splits RedisAddr (validated) into rueidis InitAddress.
func (o *Options) addrs() []string {
	parts, _ := ParseRedisAddr(o.RedisAddr)
	return parts
}

// limits are the effective limits of one tenant.
type limits struct {
	rpm   int64 // requests per minute; Unlimited = no request bucket
	burst int64 // request bucket capacity
	tpm   int64 // token budget per minute; 0 = off
}

// fileLimits resolves a tenant's limits from Options alone.
func (o *Options) fileLimits(tenant string) limits {
	rpm := int64(o.Default)
	if v, ok := o.Tenants[tenant]; ok {
		rpm = int64(v)
	}
	tpm := o.TokensPerMinute
	if v, ok := o.TenantTokens[tenant]; ok {
		tpm = v
	}
	return limits{rpm: rpm, burst: o.burstFor(rpm), tpm: tpm}
}

// burstFor is the capacity of a request bucket refilling at rpm.
func (o *Options) burstFor(rpm int64) int64 {
	if o.Burst > 0 {
		return int64(o.Burst)
	}
	return rpm
}

// validateMax refuses a limit above MaxLimit.
func (o *Options) validateMax() error {
	const reason = "must be at most 10^12 (-1: unlimited)"
	over := func(name string, v int64) error {
		if v > MaxLimit {
			return &OptionError{name, v, reason}
		}
		return nil
	}
	errs := []error{over("default", int64(o.Default)), over("burst", int64(o.Burst)), over("tokens_per_minute", o.TokensPerMinute)}
	for name, v := range o.Tenants {
		errs = append(errs, over("tenants."+name, int64(v)))
	}
	for id, v := range o.Keys {
		errs = append(errs, over("keys."+id, int64(v)))
	}
	for name, v := range o.TenantTokens {
		errs = append(errs, over("tenant_tokens."+name, v))
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
