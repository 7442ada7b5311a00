package quota

import (
	"context"
	"crypto/tls"
	_ "embed"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/stream-relay/stream-relay/internal/socket"
)

// bucketLua is the one script that takes and debits buckets. It runs with
// EVALSHA, and EVAL when the server does not know it (runScript).
//
//go:embed bucket.lua
var bucketLua string

// Fields of a tenant's override hash, relay:rl:{tenant}:cfg.
var cfgFields = []string{"rpm", "burst", "tpm"}

var errNoClient = errors.New("quota: redis client not connected")

// redisStore holds the rueidis client. The client is created by New, or by
// the probe when Redis was unreachable at start.
type redisStore struct {
	o  *Options
	mu sync.RWMutex // guards c; written at most once
	c  rueidis.Client

	// onInvalidations, when set, receives the keys whose client-side cache
	// entries Redis invalidated.
	onInvalidations func([]rueidis.RedisMessage)
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
		OnInvalidations:   s.onInvalidations,
		// A Redis Cluster's slots are re-read every second: a master that
		// hangs (a partition) rather than dies left its slots to it until
		// its connection's write timeout (10 s) even after a replica had
		// taken them over. Ignored by a single Redis.
		ClusterOption: rueidis.ClusterOption{ShardsRefreshInterval: time.Second},
		DialCtxFn:     dialRedis,
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

func (s *redisStore) close() {
	if c := s.client(); c != nil {
		c.Close()
	}
}

// takeRedis decides through Redis. In steady state an admitted request costs
// one round trip (the script) and a refused one none: the blocked-until keys
// and the override hash come from the client-side cache, and Redis
// invalidates them the moment they change. The reads and the script are
// pinned commands built once per tenant, and the Redis call is bounded by a
// shared deadline: an admitted decision allocates only the script's reply
// and rueidis's cache key of the HMGET.
func (l *Limiter) takeRedis(ctx context.Context, ts *tenantState, ks *keyState) (Decision, error) {
	c := l.redis.client()
	if c == nil {
		return Decision{}, errNoClient
	}
	ctx, cancel := l.deadlines.bound(ctx)
	defer cancel()

	ttl := l.o.CacheTTL
	reads := ts.tenantCmds(c)
	lim, ov, err := l.overridden(ts, c.DoCache(ctx, reads.cfg, ttl))
	if err != nil {
		return Decision{}, err
	}
	kl := ks.limit()

	// A blocked-until key exists exactly while its bucket cannot admit; its
	// cache entry expires with it (rueidis caps the entry at the key's PTTL).
	tenantBlock, tenantHit, err := blockWait(ctx, c, reads.blk, ts.blkKey, &ts.blkUntil, ttl)
	if err != nil {
		return Decision{}, err
	}
	var keyBlock block
	keyHit := true
	if ks != nil {
		if keyBlock, keyHit, err = blockWait(ctx, c, ks.keyCmds(c).blk, ks.blkKey, &ks.blkUntil, ttl); err != nil {
			return Decision{}, err
		}
	}
	if tenantBlock.wait > 0 || keyBlock.wait > 0 {
		l.remember(ts, lim, ov, nil, nil, 0)
		src := SourceRedis
		if tenantHit && keyHit {
			src = SourceCache
		}
		if keyBlock.wait > tenantBlock.wait {
			return blockedDecision(lim, kl, true, keyBlock, src), nil
		}
		return blockedDecision(lim, kl, false, tenantBlock, src), nil
	}

	if lim.rpm == Unlimited && kl == nil && lim.tpm <= 0 {
		l.remember(ts, lim, ov, nil, nil, 0)
		return Decision{Allowed: true, Source: SourceBypass}, nil
	}
	size := l.o.Lease
	if l.leasing {
		ts.mu.Lock()
		size = int(l.want(leaseOf(ts, ks)))
		ts.mu.Unlock()
	}
	var t *takeCmd
	if ks != nil {
		t = take(c, &ks.take, ks.takeKeys, lim, kl, size)
	} else {
		t = take(c, &ts.take, ts.takeKeys, lim, nil, size)
	}
	allowed, lv, n, err := parseTake(runScript(ctx, c, t.cmd, t.keys, t.args))
	if err != nil {
		return Decision{}, err
	}
	l.remember(ts, lim, ov, ks, &lv, n)
	return decide(lim, kl, lv, allowed, SourceRedis), nil
}

// remember keeps what Redis decided: the tenant's effective limits (and the
// overrides among them, which a reload's Adopt carries over) and,
// after a script run that took n tokens (0 on refusal), its bucket levels
// (lv, before the take) at local time now, for the local fallback, which
// then continues from the shared buckets' last known state instead of
// granting a fresh burst. Taking n > 1 grants a lease. New limits end the
// tenant's leases.
func (l *Limiter) remember(ts *tenantState, lim limits, ov override, ks *keyState, lv *levels, n int64) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if lim != ts.seen {
		l.dropLeases(ts)
	}
	ts.seen, ts.ov = lim, ov
	ts.untracked = false // the hash was just read, and is tracked again
	if lv == nil {
		return
	}
	now := l.now()
	// A take answered after the switch to the fallback grants no lease:
	// the switch ended every lease (forgetLeases) and the fallback's
	// buckets, set below, count the leased tokens as the tenant's. A
	// lease granted now would be spent twice, or given back to Redis
	// after the fallback admitted its tokens. (redisFailed stores up
	// before forgetLeases takes ts.mu, which this holds.)
	if n > 1 && l.up.Load() {
		l.grant(ts, ks, lim, *lv, n, now)
		l.stats.leases.Add(1)
	}
	// A lease's unused tokens stay in the in-process buckets (see
	// spendLocal): only this request's token is taken.
	take := float64(min(n, 1))
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
	ctx, cancel := l.deadlines.bound(ctx)
	defer cancel()
	lim, ov, err := l.overridden(ts, c.DoCache(ctx, ts.tenantCmds(c).cfg, l.o.CacheTTL))
	if err != nil {
		return err
	}
	l.remember(ts, lim, ov, nil, nil, 0)
	if lim.tpm <= 0 {
		return nil
	}
	args := [5]string{"debit", strconv.FormatInt(lim.tpm, 10), strconv.FormatInt(tokens, 10),
		strconv.FormatInt(lim.rpm, 10), strconv.FormatInt(lim.burst, 10)}
	cmd := c.B().Evalsha().Sha1(bucketSHA).Numkeys(int64(len(ts.debitKeys))).Key(ts.debitKeys...).Arg(args[:]...).Build()
	left, err := runScript(ctx, c, cmd, ts.debitKeys, args[:]).AsInt64()
	if err != nil {
		return err
	}
	if left <= 0 && l.leasing {
		// The budget is exhausted: leased requests would pass it.
		ts.mu.Lock()
		l.dropLeases(ts)
		ts.mu.Unlock()
	}
	return nil
}

// blockDeadline is a block's end by its key's PTTL, kept with the cached
// entry it was asked beside (its absolute expiry, rueidis' CachePXAT, the
// same for every read of that entry): a later cached read of the same entry
// uses it, one of another entry (a block that began after the first was
// lifted) does not, and its own wait stands. nil: none asked. One pointer,
// so that a read never pairs one entry with another's deadline.
type blockDeadline struct{ p atomic.Pointer[blockEnd] }

type blockEnd struct {
	until time.Time // the block's end
	entry int64     // the cached entry's expiry, unix ms
}

// blockWait is the time left on the blocked-until key named key, read
// through the client-side cache (cmd, a GET of it), and whether the cache
// answered. rueidis caps a cached key's PTTL at the cache's TTL, so a wait
// at the cap may be longer: the key's own PTTL is asked then, once per
// fetch of the key (the answer is kept in d), and cached reads of the same
// entry use that deadline, also once their own wait has counted down below
// the cap (5 s after the fetch, a block of minutes read 25 s). A block
// shorter than the TTL costs nothing more than before.
func blockWait(ctx context.Context, c rueidis.Client, cmd rueidis.Cacheable, key string, d *blockDeadline, ttl time.Duration) (block, bool, error) {
	b, entry, hit, err := blockedFor(c.DoCache(ctx, cmd, ttl))
	if err != nil || b.wait == 0 {
		return b, hit, err
	}
	if e := d.p.Load(); hit && e != nil && e.entry == entry {
		if left := time.Until(e.until); left >= b.wait {
			b.wait = left
			return b, hit, nil
		}
	}
	if b.wait < ttl-time.Second {
		return b, hit, nil
	}
	ms, err := c.Do(ctx, c.B().Pttl().Key(key).Build()).AsInt64()
	if err != nil || ms <= 0 {
		// Gone meanwhile, or not known: the cached wait stands.
		return b, hit, nil
	}
	left := time.Duration(ms) * time.Millisecond
	d.p.Store(&blockEnd{until: time.Now().Add(left), entry: entry})
	b.wait = max(left, b.wait)
	return b, hit, nil
}

// block is what a blocked-until key says: the time left (0: no block) and
// how long after that the request bucket a refusal reports is full again
// (afterNone: the tenant has none; afterUnknown: the key was written by a
// relay before the value said it, and the bucket was empty).
type block struct {
	wait, after time.Duration
}

const (
	afterNone    = -1
	afterUnknown = -2
)

// blockedFor reads a GET of a blocked-until key: its block (none when the
// key does not exist), the cached entry's expiry (unix ms), and whether the
// answer came from the local cache.
func blockedFor(r rueidis.RedisResult) (b block, entry int64, hit bool, err error) {
	hit = r.IsCacheHit()
	if err := r.Error(); err != nil {
		if rueidis.IsRedisNil(err) {
			return block{}, 0, hit, nil
		}
		return block{}, 0, hit, err
	}
	pttl := r.CachePTTL()
	if pttl <= 0 {
		// Expired this very millisecond, or no expiry known: let the
		// script decide.
		return block{}, 0, hit, nil
	}
	b = block{wait: time.Duration(pttl) * time.Millisecond, after: afterUnknown}
	// "r<ms>" (bucket.lua, block); an older script wrote the wait alone.
	if v, err := r.ToString(); err == nil && len(v) > 1 && v[0] == 'r' {
		if ms, err := strconv.ParseInt(v[1:], 10, 64); err == nil {
			b.after = afterNone
			if ms >= 0 {
				b.after = time.Duration(ms) * time.Millisecond
			}
		}
	}
	return b, r.CachePXAT(), hit, nil
}

// levelScale is the fixed point of the levels in the take script's reply:
// micro-tokens as integers, which rueidis reads without allocating.
const levelScale = 1e6

// parseTake reads the script's {allowed, req, key, tok, taken} reply, levels
// in micro-tokens, taken the tokens taken from each request bucket (more
// than 1: a lease). The array is the reply's only allocation.
func parseTake(r rueidis.RedisResult) (bool, levels, int64, error) {
	var lv levels
	vals, err := r.ToArray()
	if err != nil {
		return false, lv, 0, err
	}
	if len(vals) != 5 {
		return false, lv, 0, errors.New("quota: unexpected script reply")
	}
	var n [5]int64
	for i := range vals {
		if n[i], err = vals[i].ToInt64(); err != nil {
			return false, lv, 0, err
		}
	}
	lv.req = float64(n[1]) / levelScale
	lv.key = float64(n[2]) / levelScale
	lv.tok = float64(n[3]) / levelScale
	return n[0] == 1, lv, n[4], nil
}

// dialRedis connects to a Redis node over plain TCP whose reads and writes
// skip the scheduler's system-call bookkeeping (package socket): every
// decision is a write and a read on this connection.
func dialRedis(ctx context.Context, addr string, d *net.Dialer, _ *tls.Config) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return socket.Wrap(c), nil
}
