package quota

// A request is admitted before it is served; one that then is not served
// (its client asked for 100-continue, was admitted before its upload and
// left or cut the upload short) gives its token back with Refund, to the
// bucket it came from:
//
//   - an in-process bucket (Source local): that bucket, and the key's;
//   - a lease (Source lease): the lease it came from while it lives, with
//     the same limits (no round trip; an unused token goes back to Redis
//     with the lease's others when it ends), else the Redis buckets;
//   - the Redis buckets (Source redis): those, by the give script in the
//     background (the sweeper's queue with leases, a goroutine of its own
//     without), never on the caller's goroutine.
//
// Every token is capped at its bucket's capacity (the give script's and
// bucket.level's cap), and a token is given back once and only for an
// admission that took one, so a refund never admits more than the buckets
// allow. The in-process buckets, which count what Redis and the leases hold
// for the fallback (remember, spendLocal), get theirs back in every case.
// While the fallback decides (Redis unavailable) a token Redis gave is not
// given back to Redis: the in-process buckets, which decide then, have it.
// A refund is best effort: one the give script fails to return is counted
// as a Redis error and dropped, under-admitting the tenant by one token
// until its bucket refills, as before refunds existed. Successful requests
// never refund: the hot path is unchanged.

// Refund gives back the request token that d, an admission Take returned
// for tenant and keyID, took, for a request that was not served after all.
// A refusal, or an admission that took no token (Source bypass), gives
// nothing back. It must be called at most once per decision. It does not
// wait for Redis; after Close it does nothing.
func (l *Limiter) Refund(tenant, keyID string, d Decision) {
	if !d.Allowed || (d.Source != SourceLocal && d.Source != SourceRedis && d.Source != SourceLease) {
		return
	}
	l.life.Lock()
	closed := l.closed
	l.life.Unlock()
	if closed {
		return
	}
	ts := l.tenant(tenant)
	ks := ts.key(&l.o, keyID)
	toRedis := false
	ts.mu.Lock()
	now := l.now()
	lim := ts.seen
	unspendLocal(ts, ks, lim, now)
	if l.redis != nil && !l.up.Load() {
		// The fallback decides: the token is its own again, not owed to
		// Redis at the switch back (an admission refunded was charged
		// there: 400 aborted uploads in a short outage locked the tenant
		// out for minutes); one Redis or a lease gave is owed back to it.
		if ks.limit() != nil {
			ks.owed--
		} else if lim.rpm != Unlimited {
			ts.owed--
		}
	}
	if d.Source != SourceLocal && l.up.Load() {
		toRedis = d.Source == SourceRedis || !l.refundLease(leaseOf(ts, ks), lim, now)
	}
	ts.mu.Unlock()
	if toRedis {
		l.refundRedis(giveBack{ts: ts, ks: ks, lim: lim, n: 1, refund: true})
	}
}

// unspendLocal gives one token back to the tenant's and the key's
// in-process request buckets, capped at their capacity: the inverse of
// takeLocal's take and spendLocal. The caller holds ts.mu.
func unspendLocal(ts *tenantState, ks *keyState, lim limits, now float64) {
	if lim.rpm != Unlimited {
		ts.req.set(now, min(ts.req.level(now, perMs(lim.rpm), float64(lim.burst))+1, float64(lim.burst)))
	}
	if ks != nil {
		ks.req.set(now, min(ks.req.level(now, perMs(ks.lim.rpm), float64(ks.lim.burst))+1, float64(ks.lim.burst)))
	}
}

// refundLease puts a leased token back into ls when ls still lives under
// limits lim, and reports whether it did. A lease whose tokens are used up
// but that has not expired lives: its next leased admission takes the
// token, or the sweeper gives it back when the lease expires. The caller
// holds the tenant's mu.
func (l *Limiter) refundLease(ls *lease, lim limits, now float64) bool {
	if !l.leasing || ls.expires == 0 || now >= ls.expires || ls.lim != lim {
		return false
	}
	ls.left++
	ls.used-- // the X-RateLimit-Remaining of the next leased admissions
	return true
}

// refundRedis gives g back to Redis in the background: through the
// sweeper's queue when there is one (leases), else on a goroutine of its
// own, bounded by Options.Timeout and awaited by Close. A refund follows
// an admitted request, so there are no more of these goroutines than the
// rate limit admits in Options.Timeout.
func (l *Limiter) refundRedis(g giveBack) {
	if l.leasing {
		l.queueGiveBack(g)
		return
	}
	l.life.Lock()
	defer l.life.Unlock()
	if l.closed {
		return
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		l.give([]giveBack{g})
	}()
}
