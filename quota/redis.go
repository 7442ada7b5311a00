package quota

import (
	"context"
	_ "embed"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

//go:embed bucket.lua
var bucketLua string

// bucketScript is the one script that takes and debits buckets. rueidis runs
// it with EVALSHA and falls back to EVAL when the server does not know it
// (first use, restart, failover).
var bucketScript = rueidis.NewLuaScript(bucketLua)

// Fields of a tenant's override hash, relay:rl:{tenant}:cfg.
var cfgFields = []string{"rpm", "burst", "tpm"}

var errNoClient = errors.New("quota: redis client not connected")

// redisStore holds the rueidis client. The client is created by New, or by
// the probe when Redis was unreachable at start.
type redisStore struct {
	o  *Options
	mu sync.RWMutex // guards c; written at most once
	c  rueidis.Client
}

func newRedisStore(o *Options) *redisStore {
	return &redisStore{o: o}
}

func (s *redisStore) client() rueidis.Client {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.c
}

// connect creates the client when there is none. rueidis dials at creation;
// afterwards it redials by itself and flushes its client-side cache when a
// connection (and with it the server's tracking state) is lost.
func (s *redisStore) connect() error {
	if s.client() != nil {
		return nil
	}
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: s.o.addrs(),
		Password:    s.o.RedisPassword,
		ClientName:  "stream-relay-quota",
		Dialer:      net.Dialer{Timeout: max(time.Second, s.o.Timeout)},
		// A retried command would outlive Timeout anyway; the fallback is
		// the retry.
		DisableRetry: true,
		// Per connection; the cache holds two small entries per active tenant.
		CacheSizeEachConn: 8 << 20,
		// One pipelined connection per node: concurrent decisions share its
		// round trips, and the probe that ends a fallback tests the very
		// connection decisions use (with several, a second one still
		// broken by a Redis restart failed the next decision: a second
		// switch to the fallback).
		PipelineMultiplex: -1,
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c != nil {
		c.Close()
		return nil
	}
	s.c = c
	return nil
}

// ping reports whether Redis answers within Timeout: a PING, or with key
// set an EXISTS of key, which only the node owning key's slot answers, and
// only while its cluster serves keys.
func (s *redisStore) ping(key string) error {
	if err := s.connect(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	c := s.client()
	if key != "" {
		return c.Do(ctx, c.B().Exists().Key(key).Build()).Error()
	}
	return c.Do(ctx, c.B().Ping().Build()).Error()
}

func (s *redisStore) close() {
	if c := s.client(); c != nil {
		c.Close()
	}
}

// takeRedis decides through Redis. In steady state an admitted request costs
// one round trip (the script) and a refused one none: the blocked-until key
// and the override hash come from the client-side cache, and Redis
// invalidates both the moment they change.
func (l *Limiter) takeRedis(ctx context.Context, ts *tenantState, ks *keyState) (Decision, error) {
	c := l.redis.client()
	if c == nil {
		return Decision{}, errNoClient
	}
	ctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()

	ttl := l.o.CacheTTL
	var multi [3]rueidis.CacheableTTL
	multi[0] = rueidis.CT(c.B().Get().Key(ts.blkKey).Cache(), ttl)
	multi[1] = rueidis.CT(c.B().Hmget().Key(ts.cfgKey).Field(cfgFields...).Cache(), ttl)
	n := 2
	if ks != nil {
		multi[2] = rueidis.CT(c.B().Get().Key(ks.blkKey).Cache(), ttl)
		n = 3
	}
	res := c.DoMultiCache(ctx, multi[:n]...)

	lim, err := ts.overridden(res[1])
	if err != nil {
		return Decision{}, err
	}
	kl := ks.limit()

	// A blocked-until key exists exactly while its bucket cannot admit; its
	// cache entry expires with it (rueidis caps the entry at the key's PTTL).
	tenantWait, tenantHit, err := blockedFor(res[0])
	if err != nil {
		return Decision{}, err
	}
	var keyWait time.Duration
	keyHit := true
	if ks != nil {
		if keyWait, keyHit, err = blockedFor(res[2]); err != nil {
			return Decision{}, err
		}
	}
	if tenantWait > 0 || keyWait > 0 {
		ts.remember(lim, nil, nil, 0, false)
		src := SourceRedis
		if tenantHit && keyHit {
			src = SourceCache
		}
		return blockedDecision(lim, kl, keyWait > tenantWait, max(tenantWait, keyWait), src), nil
	}

	if lim.rpm == Unlimited && kl == nil && lim.tpm <= 0 {
		ts.remember(lim, nil, nil, 0, false)
		return Decision{Allowed: true, Source: SourceBypass}, nil
	}
	keys := ts.takeKeys
	args := make([]string, 4, 6)
	args[0] = "take"
	args[1] = strconv.FormatInt(lim.rpm, 10)
	args[2] = strconv.FormatInt(lim.burst, 10)
	args[3] = strconv.FormatInt(lim.tpm, 10)
	if kl != nil {
		keys = ks.takeKeys
		args = append(args, strconv.FormatInt(kl.rpm, 10), strconv.FormatInt(kl.burst, 10))
	}
	vals, err := bucketScript.Exec(ctx, c, keys, args).ToArray()
	if err != nil {
		return Decision{}, err
	}
	allowed, lv, err := parseTake(vals)
	if err != nil {
		return Decision{}, err
	}
	ts.remember(lim, ks, &lv, l.now(), allowed)
	return decide(lim, kl, lv, allowed, SourceRedis), nil
}

// remember keeps what Redis decided for the local fallback: the tenant's
// effective limits and, after a script run, its bucket levels (lv, before the
// take) at local time now. A switch to the fallback then continues from the
// shared buckets' last known state instead of granting a fresh burst.
func (ts *tenantState) remember(lim limits, ks *keyState, lv *levels, now float64, taken bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.seen = lim
	if lv == nil {
		return
	}
	take := 0.0
	if taken {
		take = 1
	}
	if lim.rpm != Unlimited {
		ts.req.set(now, lv.req-take)
	}
	if ks != nil {
		ks.req.set(now, lv.key-take)
	}
	if lim.tpm > 0 {
		ts.tok.set(now, lv.tok)
	}
}

// debitRedis charges the tenant's token bucket in Redis when it has a budget.
func (l *Limiter) debitRedis(ctx context.Context, ts *tenantState, tokens int64) error {
	c := l.redis.client()
	if c == nil {
		return errNoClient
	}
	ctx, cancel := context.WithTimeout(ctx, l.o.Timeout)
	defer cancel()
	cfg := c.DoCache(ctx, c.B().Hmget().Key(ts.cfgKey).Field(cfgFields...).Cache(), l.o.CacheTTL)
	lim, err := ts.overridden(cfg)
	if err != nil {
		return err
	}
	ts.remember(lim, nil, nil, 0, false)
	if lim.tpm <= 0 {
		return nil
	}
	args := []string{"debit", strconv.FormatInt(lim.tpm, 10), strconv.FormatInt(tokens, 10)}
	return bucketScript.Exec(ctx, c, ts.debitKeys, args).Error()
}

// blockedFor reads a GET of a blocked-until key: the time left, 0 when the
// key does not exist, and whether the answer came from the local cache.
func blockedFor(r rueidis.RedisResult) (time.Duration, bool, error) {
	hit := r.IsCacheHit()
	if err := r.Error(); err != nil {
		if rueidis.IsRedisNil(err) {
			return 0, hit, nil
		}
		return 0, hit, err
	}
	pttl := r.CachePTTL()
	if pttl <= 0 {
		// Expired this very millisecond, or no expiry known: let the
		// script decide.
		return 0, hit, nil
	}
	return time.Duration(pttl) * time.Millisecond, hit, nil
}

// overridden merges the tenant's Redis override hash (HMGET rpm burst tpm)
// into its file limits.
// Malformed or out-of-range fields are ignored: an operator's typo must not
// lift or zero a limit.
func (ts *tenantState) overridden(r rueidis.RedisResult) (limits, error) {
	vals, err := r.ToArray()
	if err != nil {
		return limits{}, err
	}
	lim := ts.file
	burstSet := false
	if len(vals) == len(cfgFields) {
		if v, ok := cfgInt(&vals[0]); ok && (v > 0 || v == Unlimited) {
			lim.rpm = v
		}
		if v, ok := cfgInt(&vals[1]); ok && v > 0 {
			lim.burst, burstSet = v, true
		}
		if v, ok := cfgInt(&vals[2]); ok && v >= 0 {
			lim.tpm = v
		}
	}
	if !burstSet && lim.rpm != ts.file.rpm {
		// A new rate without a burst gets the file's burst rule.
		lim.burst = ts.fileBurst(lim.rpm)
	}
	return lim, nil
}

func cfgInt(m *rueidis.RedisMessage) (int64, bool) {
	if m.IsNil() {
		return 0, false
	}
	v, err := m.AsInt64()
	return v, err == nil
}

// parseTake reads the script's {allowed, req, key, tok} reply.
func parseTake(vals []rueidis.RedisMessage) (bool, levels, error) {
	var lv levels
	if len(vals) != 4 {
		return false, lv, errors.New("quota: unexpected script reply")
	}
	allowed, err := vals[0].AsInt64()
	if err != nil {
		return false, lv, err
	}
	for i, dst := range [3]*float64{&lv.req, &lv.key, &lv.tok} {
		s, err := vals[i+1].ToString()
		if err != nil {
			return false, lv, err
		}
		if *dst, err = strconv.ParseFloat(s, 64); err != nil {
			return false, lv, err
		}
	}
	return allowed == 1, lv, nil
}
