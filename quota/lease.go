package quota

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/rueidis"
)

// A lease is request tokens that one Redis decision took ahead for the next
// requests of one tenant (or tenant and relay key) on this relay: the script
// debited them from the shared buckets, so admitting them locally never
// admits more than the buckets allow. The script leases only while the
// buckets stay at least half full, so a tenant near its limit is decided by
// Redis request by request, exactly as without leases.
//
// A lease ends when its tokens are used, when it expires (Options.LeaseTTL),
// when the tenant's override hash or blocked-until key changes in Redis (an
// invalidation of the client-side cache says so within milliseconds), when
// this relay sees new limits for the tenant, or when a Debit exhausts the
// tenant's token budget. Unused tokens are then given back to the buckets by
// a background goroutine, best effort.
type lease struct {
	left    int64   // tokens not used yet
	used    int64   // tokens used since the grant, the granting request's included
	lim     limits  // the tenant's limits at the grant
	lv      levels  // the bucket levels before the grant's take
	expires float64 // ms on the limiter's clock
	// renewing: a renewal of this lease is queued or running (renew.go).
	renewing bool
	// size is how many tokens the next grant or renewal asks for (0:
	// Options.Lease). Unlike the rest it outlives the lease: see grow.
	size int64
}

// want is how many tokens the next grant or renewal of ls asks for.
func (l *Limiter) want(ls *lease) int64 {
	if ls.size == 0 {
		return int64(l.o.Lease)
	}
	return ls.size
}

// renewPoint is the number of tokens left at which ls is renewed ahead:
// Options.RenewBelow scaled to the lease's size; 0 without renewals.
func (l *Limiter) renewPoint(ls *lease) int64 {
	if l.renewals == nil {
		return 0
	}
	return int64(l.o.RenewBelow) * l.want(ls) / int64(l.o.Lease)
}

// grow doubles ls's size (up to Options.LeaseMax) when it reached its
// renewal point within an eighth of LeaseTTL: at that rate a lease of this
// size is gone before a renewal's round trip is sure to be back.
func (l *Limiter) grow(ls *lease, now float64) {
	ttl := float64(l.o.LeaseTTL) / float64(time.Millisecond)
	if granted := ls.expires - ttl; now-granted < ttl/8 {
		ls.size = min(2*l.want(ls), int64(l.o.LeaseMax))
	}
}

// expire ends an expired lease; one that left more than half its size
// unused halves the size of the next (down to Options.Lease). The caller
// holds ts.mu.
func (l *Limiter) expire(ts *tenantState, ks *keyState, ls *lease) {
	if w := l.want(ls); ls.left > w/2 {
		ls.size = max(w/2, int64(l.o.Lease))
	}
	l.release(ts, ks, ls)
}

// giveBack is a lease's unused tokens on their way back to Redis, or a
// refunded request's token (refund.go).
type giveBack struct {
	ts  *tenantState
	ks  *keyState
	lim limits
	n   int64
	// refund: a request's token (Refund), not counted as a lease's.
	refund bool
	// charge: n < 0, the fallback's admissions charged back (chargeBack),
	// not counted as a lease's.
	charge bool
}

// givebacks queues unused lease tokens for the sweeper.
type givebacks struct {
	mu      sync.Mutex
	pending []giveBack
	wake    chan struct{} // a release asks the sweeper to give back now
}

// leaseOf returns the lease slot of a tenant's requests without a limited
// relay key, or of a key's.
func leaseOf(ts *tenantState, ks *keyState) *lease {
	if ks != nil {
		return &ks.lease
	}
	return &ts.lease
}

// takeLease admits a request from a lease this relay holds, without Redis and
// without allocating. It reports false when there is no usable lease; an
// expired one is queued for its give-back.
func (l *Limiter) takeLease(ts *tenantState, ks *keyState) (Decision, bool) {
	ls := leaseOf(ts, ks)
	ts.mu.Lock()
	if ls.left <= 0 {
		ts.mu.Unlock()
		return Decision{}, false
	}
	now := l.now()
	if now >= ls.expires {
		l.expire(ts, ks, ls)
		ts.mu.Unlock()
		return Decision{}, false
	}
	ls.left--
	ls.used++
	if ls.left == l.renewPoint(ls) {
		l.grow(ls, now)
	}
	lim, lv := ls.lim, ls.lv
	l.spendLocal(ts, ks, lim, now)
	l.renewAhead(ts, ks, ls, now)
	// The levels as if each request since the grant had taken its token;
	// decide takes this request's. Refill since the grant is not counted
	// (Remaining a little low), nor what other relays took since (a little
	// high): leases exist only while the bucket is more than half full.
	taken := float64(ls.used - 1)
	lv.req -= taken
	lv.key -= taken
	ts.mu.Unlock()
	return decide(lim, ks.limit(), lv, true, SourceLease), true
}

// spendLocal takes a leased request's token from the in-process buckets.
// They count a lease's unused tokens as the tenant's (remember takes only
// the granting request's token), so a switch to the local fallback continues
// with them: they were debited in Redis already. The caller holds ts.mu.
func (l *Limiter) spendLocal(ts *tenantState, ks *keyState, lim limits, now float64) {
	if lim.rpm != Unlimited {
		ts.req.set(now, ts.req.level(now, perMs(lim.rpm), float64(lim.burst))-1)
	}
	if ks != nil {
		ks.req.set(now, ks.req.level(now, perMs(ks.lim.rpm), float64(ks.lim.burst))-1)
	}
}

// grant stores a lease of n tokens (the granting request's included) that
// the script took from levels lv. A live lease of the same limits is merged
// into it; any other is given back. The caller holds ts.mu.
func (l *Limiter) grant(ts *tenantState, ks *keyState, lim limits, lv levels, n int64, now float64) {
	ls := leaseOf(ts, ks)
	if ls.left > 0 && now < ls.expires && ls.lim == lim {
		ls.left += n - 1
	} else {
		l.release(ts, ks, ls)
		ls.left = n - 1
	}
	ls.used, ls.lim, ls.lv = 1, lim, lv
	ls.expires = now + float64(l.o.LeaseTTL)/float64(time.Millisecond)
}

// release ends a lease and queues its unused tokens for the sweeper. The
// caller holds ts.mu. A renewal still queued or running stays marked: the
// next lease queues none of its own until that one is done, so that an
// instance never holds more than two leases' worth of a tenant's tokens.
func (l *Limiter) release(ts *tenantState, ks *keyState, ls *lease) {
	if ls.left > 0 {
		l.queueGiveBack(giveBack{ts: ts, ks: ks, lim: ls.lim, n: ls.left})
	}
	*ls = lease{size: ls.size, renewing: ls.renewing}
}

// queueGiveBack queues g for the sweeper and wakes it.
func (l *Limiter) queueGiveBack(g giveBack) {
	l.givebacks.mu.Lock()
	l.givebacks.pending = append(l.givebacks.pending, g)
	l.givebacks.mu.Unlock()
	select {
	case l.givebacks.wake <- struct{}{}:
	default:
	}
}

// forgetLeases ends every lease and drops the queued give-backs without
// giving anything back: on a switch to the fallback, whose in-process
// buckets count the unused leased tokens as the tenant's and may admit them.
func (l *Limiter) forgetLeases() {
	l.table.each(func(ts *tenantState) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		ts.leaseGen++
		// Redis debited the unused tokens, and the in-process buckets
		// count them as the tenant's: what the fallback admits of them is
		// no debt (owed starts below 0 by them; chargeBack gives back
		// what is left).
		ts.owed -= ts.lease.left
		// A renewal still queued stays marked (release): the next lease
		// queues none of its own before that one is done.
		ts.lease = lease{renewing: ts.lease.renewing}
		for _, ks := range ts.keyed {
			ks.owed -= ks.lease.left
			ks.lease = lease{renewing: ks.lease.renewing}
		}
	})
	l.givebacks.mu.Lock()
	l.givebacks.pending = nil
	l.givebacks.mu.Unlock()
}

// dropLeases ends every lease of the tenant (its own and its keys'). The
// caller holds ts.mu.
func (l *Limiter) dropLeases(ts *tenantState) {
	ts.leaseGen++
	l.release(ts, nil, &ts.lease)
	for _, ks := range ts.keyed {
		l.release(ts, ks, &ks.lease)
	}
}

// expireLeases ends the leases that expired by now (math.Inf(1): all).
func (l *Limiter) expireLeases(now float64) {
	l.table.each(func(ts *tenantState) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		if ts.lease.left > 0 && now >= ts.lease.expires {
			l.expire(ts, nil, &ts.lease)
		}
		for _, ks := range ts.keyed {
			if ks.lease.left > 0 && now >= ks.lease.expires {
				l.expire(ts, ks, &ks.lease)
			}
		}
	})
}

// sweep expires leases and gives their unused tokens back, four times per
// LeaseTTL and right after a lease is released early, until Close.
func (l *Limiter) sweep() {
	defer l.wg.Done()
	t := time.NewTicker(max(l.o.LeaseTTL/4, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		case <-l.givebacks.wake:
		}
		l.expireLeases(l.now())
		l.giveBackPending()
	}
}

// giveBackPending runs the give script for every queued give-back. Failures
// are counted and the tokens dropped: the tenant is under-admitted by them
// until its buckets refill (a charge dropped, chargeBack's, over-admits
// by it instead).
func (l *Limiter) giveBackPending() {
	l.givebacks.mu.Lock()
	p := l.givebacks.pending
	l.givebacks.pending = nil
	l.givebacks.mu.Unlock()
	if len(p) == 0 {
		return
	}
	l.give(p)
}

// give runs the give script for every give-back of p, each within
// Options.Timeout; a failure is counted and its tokens dropped. After a
// failure that used up its Timeout (Redis is not answering) the rest are
// dropped and counted too, so that a long queue (every tenant's lease at
// Close) costs one Timeout, not one per tenant.
func (l *Limiter) give(p []giveBack) {
	c := l.redis.client()
	if c == nil {
		return
	}
	for i, g := range p {
		keys := g.ts.takeKeys
		args := []string{"give", strconv.FormatInt(g.lim.rpm, 10), strconv.FormatInt(g.lim.burst, 10),
			strconv.FormatInt(g.lim.tpm, 10), strconv.FormatInt(g.n, 10)}
		if g.ks != nil {
			keys = g.ks.takeKeys
			args = append(args, strconv.FormatInt(g.ks.lim.rpm, 10), strconv.FormatInt(g.ks.lim.burst, 10))
		} else if g.lim.rpm == Unlimited {
			continue // no request bucket was debited
		}
		cmd := c.B().Evalsha().Sha1(bucketSHA).Numkeys(int64(len(keys))).Key(keys...).Arg(args...).Build()
		ctx, cancel := context.WithTimeout(context.Background(), l.o.Timeout)
		err := runScript(ctx, c, cmd, keys, args).Error()
		timedOut := ctx.Err() != nil
		cancel()
		switch {
		case err != nil && timedOut:
			l.stats.redisErrors.Add(uint64(len(p) - i))
			return
		case err != nil:
			l.stats.redisErrors.Add(1)
		case g.charge && g.n < 0:
			l.stats.chargedBack.Add(uint64(-g.n))
		case g.charge:
			l.stats.gaveBack.Add(uint64(g.n)) // lease tokens the fallback did not use
		case !g.refund:
			l.stats.gaveBack.Add(uint64(g.n))
		}
	}
}

// invalidated is rueidis's callback for client-side cache invalidations. A
// tenant's override hash changed (an operator's HSET): its leases end and
// its next requests go to Redis, which applies the new limits. A tenant's
// blocked-until key changed: when the tenant has a token budget that may be
// an exhausted budget, which leased requests would pass, so its leases end
// too; without a budget it is a request bucket running dry, and the leased
// tokens, already debited, are the tenant's to use. nil (the whole cache was
// flushed, or the connection lost) ends no lease, but Redis no longer tracks
// any tenant's override hash for this relay: until a decision through Redis
// reads it again, no lease is renewed, so that even a busy tenant's next
// decision (its lease used up, or expired) reads the hash, and a change
// made since applies within a lease.
func (l *Limiter) invalidated(keys []rueidis.RedisMessage) {
	if keys == nil {
		l.table.each(func(ts *tenantState) {
			ts.mu.Lock()
			ts.untracked = true
			ts.mu.Unlock()
		})
		return
	}
	for i := range keys {
		k, err := keys[i].ToString()
		if err != nil {
			continue
		}
		name, ok := tenantOfKey(l.o.KeyPrefix, k)
		if !ok {
			continue
		}
		ts := l.table.find(name)
		if ts == nil {
			continue
		}
		ts.mu.Lock()
		if strings.HasSuffix(k, ":cfg") || ts.seen.tpm > 0 {
			l.dropLeases(ts)
		}
		ts.mu.Unlock()
	}
}

// tenantOfKey returns the tenant whose hash tag key carries.
func tenantOfKey(prefix, key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, prefix+"{")
	if !ok {
		return "", false
	}
	name, _, ok := strings.Cut(rest, "}")
	return name, ok
}

// allLeases is the "now" that expires every lease.
var allLeases = math.Inf(1)
