package quota

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stream-relay/stream-relay/internal/ratelog"
)

// Source says what decided a request.
type Source uint8

// Sources of a Decision.
const (
	// SourceLocal is an in-process bucket: the embedded mode, or the
	// fallback while Redis is unavailable and OnRedisError is "local".
	SourceLocal Source = iota
	// SourceRedis is the bucket script in Redis.
	SourceRedis
	// SourceCache is a refusal served from the client-side cache of the
	// tenant's blocked-until key, without a Redis round trip.
	SourceCache
	// SourceBypass is a decision that consulted no bucket: a tenant without
	// any limit, or OnRedisError "allow"/"deny" while Redis is unavailable.
	SourceBypass
	// SourceLease is an admission from a lease: tokens an earlier Redis
	// decision of this relay took ahead for the tenant (Options.Lease).
	SourceLease

	// NumSources sizes arrays indexed by Source.
	NumSources = 5
)

var sourceNames = [NumSources]string{"local", "redis", "cache", "bypass", "lease"}

func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "unknown"
}

// Decision is one admission decision and what the relay's rate-limit headers
// need.
type Decision struct {
	// Allowed admits the request.
	Allowed bool
	// Limit is the capacity of the request bucket that binds this tenant
	// (the key's when that is tighter), for X-RateLimit-Limit. 0 when no
	// request bucket applies (unlimited tenant, or a fallback that consulted
	// none); the relay then omits the X-RateLimit headers.
	Limit int
	// Remaining is the whole tokens left in that bucket after this request,
	// for X-RateLimit-Remaining. 0 on refusal.
	Remaining int
	// Reset is the time until that bucket is full again (Remaining would
	// equal Limit), for X-RateLimit-Reset in seconds, rounded up. On refusal
	// it is at least RetryAfter.
	Reset time.Duration
	// RetryAfter is, on refusal, the time until the next request can be
	// admitted, for Retry-After in seconds, rounded up. 0 when admitted.
	RetryAfter time.Duration
	// Source says what decided.
	Source Source
}

// Limiter decides admissions per tenant. It is safe for concurrent use.
type Limiter struct {
	o     Options
	epoch time.Time
	table table

	redis     *redisStore  // nil in embedded mode
	up        atomic.Bool  // Redis decides; false = OnRedisError decides
	deadlines deadlines    // bound Redis calls by Options.Timeout
	leasing   bool         // Redis mode with Options.Lease > 1
	givebacks givebacks    // unused lease tokens for the sweeper
	renewals  chan renewal // leases to renew in the background (nil: no renewals)

	life    sync.Mutex // guards closed, probing and the probe's start
	closed  bool
	probing []string    // the probe's keys, of the last switch to the fallback
	adopted atomic.Bool // a reload's limiter took over (Adopt): it logs the switches
	// owesSwitch: this limiter counted the current outage's switch to the
	// fallback and counts the switch back when Redis decides again, or
	// when a reload's limiter takes the outage over (Adopt), so that the
	// switches each way come out even across a reload
	// (relay_ratelimit_switches_total).
	owesSwitch atomic.Bool
	done       chan struct{}
	wg         sync.WaitGroup

	stats     counters
	switchLog switchLog     // the level of each switch's log line
	slotLog   ratelog.Every // slotFailed's lines
}

// New validates o, applies its defaults and returns a Limiter. A configured
// Redis that cannot be reached yet is not an error: the limiter starts in
// fallback, logs it, and switches to Redis once it answers.
func New(o Options) (*Limiter, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	l := &Limiter{
		o:     o,
		epoch: time.Now().Add(-time.Second), // local clock starts > 0: 0 marks an untouched bucket
		done:  make(chan struct{}),
	}
	l.switchLog.quiet = o.SwitchLogQuiet
	l.givebacks.wake = make(chan struct{}, 1)
	l.table.init()
	l.deadlines.init(o.Timeout)
	if o.RedisAddr == "" {
		return l, nil
	}
	l.redis = newRedisStore(&l.o)
	l.leasing = o.Lease > 1
	if l.leasing {
		l.redis.onInvalidations = l.invalidated
		l.wg.Add(1)
		go l.sweep()
		if o.RenewBelow > 0 {
			l.renewals = make(chan renewal, renewQueue)
			l.wg.Add(1)
			go l.renewer()
		}
	}
	if err := l.redis.connect(); err != nil {
		l.stats.redisErrors.Add(1)
		l.enterFallback(err, nil)
	} else {
		l.up.Store(true)
	}
	return l, nil
}

// Take decides one request of tenant made with the relay key keyID ("" when
// unknown). It never fails: when Redis cannot decide within Options.Timeout
// the OnRedisError policy does.
func (l *Limiter) Take(ctx context.Context, tenant, keyID string) Decision {
	ts := l.tenant(tenant)
	ks := ts.key(&l.o, keyID)
	var d Decision
	if l.up.Load() {
		if l.leasing {
			if d, ok := l.takeLease(ts, ks); ok {
				l.stats.count(d)
				return d
			}
		}
		var err error
		d, err = l.takeRedis(ctx, ts, ks)
		if err != nil {
			switch {
			case slotUnavailable(err):
				l.slotFailed(err)
			case ctx.Err() == nil:
				l.redisFailed(err, ts)
			}
			d = l.fallback(ts, ks)
		}
	} else {
		d = l.fallback(ts, ks)
	}
	l.stats.count(d)
	return d
}

// Debit charges tokens used by a finished stream to the tenant's token
// budget. It is a no-op when the tenant has no budget. Like Take it never
// fails; while Redis is unavailable the in-process budget is charged.
func (l *Limiter) Debit(ctx context.Context, tenant string, tokens int64) {
	if tokens <= 0 {
		return
	}
	ts := l.tenant(tenant)
	ts.mu.Lock()
	budget := ts.seen.tpm > 0
	ts.mu.Unlock()
	if !budget {
		// No budget by the limits of the tenant's last decision, which
		// read its override hash: nothing to charge, and no Redis work
		// (the relay charges every stream, most of them estimates).
		return
	}
	if l.up.Load() {
		// The stream's context is often already cancelled (client gone);
		// the tokens were spent all the same.
		err := l.debitRedis(context.WithoutCancel(ctx), ts, tokens)
		if err == nil {
			return
		}
		if slotUnavailable(err) {
			l.slotFailed(err)
		} else {
			l.redisFailed(err, ts)
		}
	}
	l.debitLocal(ts, tokens)
}

// Close stops the background probe and closes the Redis client. Take and
// Debit must not be called after Close.
func (l *Limiter) Close() {
	l.life.Lock()
	if l.closed {
		l.life.Unlock()
		return
	}
	l.closed = true
	close(l.done)
	l.life.Unlock()
	l.wg.Wait()
	if l.owesSwitch.Swap(false) {
		// Closed in a fallback it counted (a retired limiter that found
		// Redis down after a reload): its probe will not count the switch
		// back, the limiter serving now counts its own.
		l.stats.toRedis.Add(1)
	}
	if l.leasing && l.up.Load() {
		l.expireLeases(allLeases)
		l.giveBackPending()
	}
	if l.redis != nil {
		l.redis.close()
	}
	l.deadlines.stop()
}

func (l *Limiter) tenant(name string) *tenantState {
	return l.table.get(name, l.newTenant)
}

func (l *Limiter) newTenant(name string) *tenantState {
	return newTenantState(&l.o, name)
}

// now is the limiter's monotonic clock in milliseconds, always > 0.
func (l *Limiter) now() float64 {
	return float64(time.Since(l.epoch)) / float64(time.Millisecond)
}

// fallback decides without Redis by Options.OnRedisError. In embedded mode
// OnRedisError is irrelevant: the local bucket always decides.
func (l *Limiter) fallback(ts *tenantState, ks *keyState) Decision {
	if l.redis != nil {
		switch l.o.OnRedisError {
		case OnErrorAllow:
			return Decision{Allowed: true, Source: SourceBypass}
		case OnErrorDeny:
			return Decision{RetryAfter: l.o.ProbeInterval, Reset: l.o.ProbeInterval, Source: SourceBypass}
		}
	}
	return l.takeLocal(ts, ks)
}

// takeLocal decides with the in-process buckets and the tenant's last known
// limits (file limits, plus the Redis overrides seen before an outage).
// It does not allocate.
func (l *Limiter) takeLocal(ts *tenantState, ks *keyState) Decision {
	now := l.now()
	kl := ks.limit()
	ts.mu.Lock()
	lim := ts.seen
	if lim.rpm == Unlimited && kl == nil && lim.tpm <= 0 {
		ts.mu.Unlock()
		return Decision{Allowed: true, Source: SourceBypass}
	}
	var lv levels
	if lim.rpm != Unlimited {
		lv.req = ts.req.level(now, perMs(lim.rpm), float64(lim.burst))
	}
	if kl != nil {
		lv.key = ks.req.level(now, perMs(kl.rpm), float64(kl.burst))
	}
	if lim.tpm > 0 {
		lv.tok = ts.tok.level(now, perMs(lim.tpm), float64(lim.tpm))
	}
	ok := admits(lim, kl, lv)
	if ok {
		if lim.rpm != Unlimited {
			ts.req.set(now, lv.req-1)
		}
		if kl != nil {
			ks.req.set(now, lv.key-1)
		}
		if l.redis != nil && !l.up.Load() {
			// Owed to the shared buckets (chargeBack): the key's
			// charge takes from the tenant's bucket too. Only in a
			// fallback: a decision a cancelled request cut short, Redis
			// up, owes nothing that a switch back would collect.
			if kl != nil {
				ks.owed++
			} else if lim.rpm != Unlimited {
				ts.owed++
			}
		}
	}
	ts.mu.Unlock()
	return decide(lim, kl, lv, ok, SourceLocal)
}

func (l *Limiter) debitLocal(ts *tenantState, tokens int64) {
	now := l.now()
	ts.mu.Lock()
	defer ts.mu.Unlock()
	tpm := ts.seen.tpm
	if tpm <= 0 {
		return
	}
	x := ts.tok.level(now, perMs(tpm), float64(tpm))
	ts.tok.set(now, x-float64(tokens))
	if l.redis != nil && !l.up.Load() {
		ts.owedTokens += tokens
	}
}

// chargeBack charges Redis, once it decides again, with what the fallback
// admitted and debited in-process meanwhile (tenantState.owed): its local
// buckets went on from the levels Redis last gave this relay, which every
// relay in the fallback spent again, and which were still in Redis after
// the switch back (two relays admitted +30 % over a window with one switch
// each way). The charge takes the requests from the shared buckets (they
// may go below 0: later requests wait for the refill) and the tokens from
// the budget; one script run per tenant and relay key. A tenant that used
// fewer than the unused lease tokens the switch dropped (forgetLeases: owed
// starts below 0 by them, since Redis had debited them) gets the rest back.
// After a failure that used up its Timeout the rest is dropped (counted in
// the Redis errors): those tenants are over-admitted by what they owed.
func (l *Limiter) chargeBack() {
	var reqs []giveBack
	type owedTok struct {
		ts *tenantState
		n  int64
	}
	var toks []owedTok
	l.table.each(func(ts *tenantState) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if ts.owed != 0 {
			reqs = append(reqs, giveBack{ts: ts, lim: ts.seen, n: -ts.owed, charge: true})
			ts.owed = 0
		}
		for _, ks := range ts.keyed {
			if ks.owed != 0 {
				reqs = append(reqs, giveBack{ts: ts, ks: ks, lim: ts.seen, n: -ks.owed, charge: true})
				ks.owed = 0
			}
		}
		if ts.owedTokens > 0 {
			toks = append(toks, owedTok{ts, ts.owedTokens})
			ts.owedTokens = 0
		}
	})
	if len(reqs) > 0 {
		l.give(reqs)
	}
	for i, t := range toks {
		ctx, cancel := context.WithTimeout(context.Background(), l.o.Timeout)
		err := l.debitRedis(ctx, t.ts, t.n)
		timedOut := ctx.Err() != nil
		cancel()
		if err != nil {
			l.stats.redisErrors.Add(1)
			if timedOut {
				l.stats.redisErrors.Add(uint64(len(toks) - i - 1))
				break
			}
		}
	}
}

// redisFailed counts a Redis error of a command of tenant ts and, on the
// first one while Redis was deciding, switches to the fallback.
func (l *Limiter) redisFailed(err error, ts *tenantState) {
	l.stats.redisErrors.Add(1)
	if l.up.CompareAndSwap(true, false) {
		if l.leasing {
			l.forgetLeases()
		}
		l.enterFallback(err, ts)
	}
}

// enterFallback logs the switch once, counts it and starts the probe that
// switches back once Redis can decide for ts again (nil: any tenant).
func (l *Limiter) enterFallback(err error, ts *tenantState) {
	l.life.Lock()
	defer l.life.Unlock()
	if l.closed {
		return
	}
	l.stats.toFallback.Add(1)
	l.owesSwitch.Store(true)
	lv, muted := l.switchLog.toFallback(time.Now())
	l.logDown(lv, muted, err)
	l.startProbe(l.o.probeKeys(ts))
}

// logDown logs at lv that Redis cannot decide (err), with the switches
// muted before this line (switchlog.go).
func (l *Limiter) logDown(lv slog.Level, muted int, err error) {
	args := []any{"on_redis_error", l.o.OnRedisError, "redis_addr", l.o.RedisAddr, "err", err}
	if muted > 0 {
		args = append(args, "switches_logged_at_debug", muted)
	}
	l.o.Logger.Log(context.Background(), lv, "quota: redis unavailable, deciding by fallback", args...)
}
