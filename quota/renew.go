package quota

import (
	"context"
	"time"
)

// A busy tenant uses its lease up in a fraction of LeaseTTL, and then one
// request in every Lease waited for a Redis round trip: the one whose script
// run took the next lease. Renewing ahead takes the next lease in the
// background while the last tokens of the current one are still being
// used, so that the requests of a steady tenant never wait for Redis.
//
// A renewal is the script's "renew" mode: a lease taken exactly as a
// request's take would take it (only from the buckets' upper half), but
// never a single token and never a blocked-until key, as there is no
// request to admit or refuse. Near the limit it takes nothing, the lease
// runs out, and requests are decided by Redis one by one as before.

// renewQueue bounds the renewals waiting for the renewer; a lease that finds
// the queue full is not renewed ahead (its tenant's next script run takes a
// lease as before).
const renewQueue = 1024

// renewal is one lease to renew: its tenant (and key), the limits it was
// granted under, the tenant's leaseGen then, and the tokens to ask for.
type renewal struct {
	ts   *tenantState
	ks   *keyState
	lim  limits
	gen  uint64
	size int
}

// renewAhead queues ls for renewal when a leased admission left it at its
// renewal point or below within the first half of its time: a lease used
// that fast runs out before it expires. The caller holds ts.mu.
func (l *Limiter) renewAhead(ts *tenantState, ks *keyState, ls *lease, now float64) {
	if l.renewals == nil || ls.renewing || ts.untracked || ls.left > l.renewPoint(ls) {
		return
	}
	if ls.expires-now < float64(l.o.LeaseTTL/2)/float64(time.Millisecond) {
		return
	}
	select {
	case l.renewals <- renewal{ts: ts, ks: ks, lim: ls.lim, gen: ts.leaseGen, size: int(l.want(ls))}:
		ls.renewing = true
	default:
	}
}

// renewer runs the queued renewals one at a time until Close. One at a time
// suffices: each covers up to Lease requests for one round trip.
func (l *Limiter) renewer() {
	defer l.wg.Done()
	for {
		select {
		case <-l.done:
			return
		case r := <-l.renewals:
			l.renew(r)
		}
	}
}

// renew runs the renew script for r and adds the tokens it took to the
// lease. Tokens that can no longer be used under r's limits (the leases
// were dropped meanwhile, the limits changed, or the limiter switched to
// the fallback, whose buckets do not hold them) go back to the buckets.
// A renewal that finds the limiter on the fallback is not run.
func (l *Limiter) renew(r renewal) {
	ls := leaseOf(r.ts, r.ks)
	n, lv, ok := l.renewScript(r)
	r.ts.mu.Lock()
	defer r.ts.mu.Unlock()
	ls.renewing = false
	if !ok || n == 0 {
		return
	}
	if !l.up.Load() || r.ts.leaseGen != r.gen || r.ts.seen != r.lim {
		l.queueGiveBack(giveBack{ts: r.ts, ks: r.ks, lim: r.lim, n: n})
		return
	}
	now := l.now()
	// lv are the levels before the renewal's take, which do not hold the
	// current lease's unused tokens: takeLease counts used-1 tokens as
	// taken since lv, so used starts at minus those, and the next leased
	// request sees what it would have seen without the renewal.
	if ls.left > 0 && now < ls.expires && ls.lim == r.lim {
		ls.used = -ls.left
		ls.left += n
	} else {
		l.release(r.ts, r.ks, ls)
		ls.used, ls.left = 0, n
	}
	ls.lim, ls.lv = r.lim, lv
	ls.expires = now + float64(l.o.LeaseTTL)/float64(time.Millisecond)
	// The in-process buckets hold the lease's tokens as the tenant's (see
	// spendLocal): the levels before the take.
	if r.lim.rpm != Unlimited {
		r.ts.req.set(now, lv.req)
	}
	if r.ks != nil {
		r.ks.req.set(now, lv.key)
	}
	if r.lim.tpm > 0 {
		r.ts.tok.set(now, lv.tok)
	}
	l.stats.leases.Add(1)
	l.stats.renewals.Add(1)
}

// renewScript runs the renew script for r: the tokens it took (0 when
// none) and the bucket levels before the take. ok is false when Redis
// failed (that is counted, and left for the next request's decision to
// find: it switches to the fallback), and when the limiter is on the
// fallback already: the script is then not run.
func (l *Limiter) renewScript(r renewal) (n int64, lv levels, ok bool) {
	c := l.redis.client()
	if c == nil || !l.up.Load() {
		return 0, lv, false
	}
	var t *takeCmd
	if r.ks != nil {
		t = renewCmd(c, &r.ks.renew, r.ks.takeKeys, r.lim, r.ks.limit(), r.size)
	} else {
		t = renewCmd(c, &r.ts.renew, r.ts.takeKeys, r.lim, nil, r.size)
	}
	ctx, cancel := l.deadlines.bound(context.Background())
	defer cancel()
	// A busy tenant's requests are decided by its leases and never read its
	// override hash: the renewal reads it, from Redis and not the
	// client-side cache, whose tracking stays with the node that owned the
	// tenant's slot before a reshard moved it (an HSET on the new owner
	// would then never reach this instance). Changed limits end the leases
	// (remember) instead of renewing them.
	lim, ov, err := l.overridden(r.ts, c.Do(ctx, c.B().Hmget().Key(r.ts.cfgKey).Field(cfgFields...).Build()))
	if err != nil {
		l.stats.redisErrors.Add(1)
		return 0, lv, false
	}
	if lim != r.lim {
		l.remember(r.ts, lim, ov, nil, nil, 0)
		return 0, lv, false
	}
	_, lv, n, err = parseTake(runScript(ctx, c, t.cmd, t.keys, t.args)) // n is 0 when nothing was taken
	if err != nil {
		l.stats.redisErrors.Add(1)
		return 0, lv, false
	}
	return n, lv, true
}
