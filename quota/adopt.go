package quota

// Adopt takes over the in-process state of prev, the limiter that a
// configuration reload replaces with l, so that the tenants' buckets carry
// on instead of starting full: a reload during a Redis outage must not give
// every tenant its burst again. For every tenant prev knew, l's in-process
// buckets (the tenant's request and token buckets, and those of relay keys
// that still have a limit) continue from prev's levels, refilled up to now
// and capped at l's capacities, and the Redis overrides prev saw last apply
// over l's file limits until Redis is read again. A prev in fallback passes
// that on: l starts deciding by its fallback too (without logging the
// switch again) and goes back to Redis when its probe succeeds; prev's
// own probe then logs its switch back at debug level only, so that the
// return is logged once.
//
// While Redis decides, the buckets in Redis carry on by themselves and the
// adopted levels only matter at the next outage. Without Redis (embedded
// mode) they are the buckets. Call Adopt once, after New and before l takes
// requests; prev may still be taking them (it is only read) and may be nil.
func (l *Limiter) Adopt(prev *Limiter) {
	if prev == nil || prev == l {
		return
	}
	prev.adopted.Store(true)
	l.switchLog.takeOver(&prev.switchLog)
	prev.table.each(func(pts *tenantState) { l.adoptTenant(prev, pts) })
	if l.redis == nil || prev.redis == nil || prev.up.Load() {
		return
	}
	prev.life.Lock()
	keys := prev.probing
	prev.life.Unlock()
	if keys == nil {
		keys = l.o.probeKeys(nil)
	}
	// The outage goes on in l: prev, retired, counts its switch back now
	// (closed before Redis returns, it never would), and l counts its own
	// switch to the fallback and, once Redis decides again, back: across
	// both, relay_ratelimit_switches_total comes out even after the outage
	// and one apart during it, as without a reload.
	if prev.owesSwitch.Swap(false) {
		prev.stats.toRedis.Add(1)
	}
	l.life.Lock()
	defer l.life.Unlock()
	if l.closed || !l.up.CompareAndSwap(true, false) {
		return // closed, or New found no Redis, counted it and probes already
	}
	if l.leasing {
		l.forgetLeases()
	}
	l.stats.toFallback.Add(1)
	l.owesSwitch.Store(true)
	l.startProbe(keys)
}

// adopted is one tenant's in-process state as Adopt copies it: levels at
// the moment of the copy; has* says which buckets prev had touched.
type adopted struct {
	ov             override
	req, tok       float64
	hasReq, hasTok bool
	keys           []adoptedKey
	// owed, owedTokens: the fallback's admissions and debits prev has not
	// charged to Redis (chargeBack); l charges them once Redis decides.
	owed, owedTokens int64
}

type adoptedKey struct {
	id    string
	level float64
	owed  int64
}

// adoptTenant copies pts, a tenant of prev, into l.
func (l *Limiter) adoptTenant(prev *Limiter, pts *tenantState) {
	var a adopted
	pts.mu.Lock()
	now := prev.now()
	lim := pts.seen
	a.ov = pts.ov
	if pts.req.last != 0 && lim.rpm != Unlimited {
		a.req, a.hasReq = pts.req.level(now, perMs(lim.rpm), float64(lim.burst)), true
	}
	if pts.tok.last != 0 && lim.tpm > 0 {
		a.tok, a.hasTok = pts.tok.level(now, perMs(lim.tpm), float64(lim.tpm)), true
	}
	for id, ks := range pts.keyed {
		if ks.req.last != 0 {
			a.keys = append(a.keys, adoptedKey{id, ks.req.level(now, perMs(ks.lim.rpm), float64(ks.lim.burst)), ks.owed})
			ks.owed = 0
		}
	}
	a.owed, a.owedTokens = pts.owed, pts.owedTokens
	pts.owed, pts.owedTokens = 0, 0
	pts.mu.Unlock()
	if !a.hasReq && !a.hasTok && len(a.keys) == 0 && a.ov == (override{}) {
		return // a tenant prev never decided for: l's own start is the same
	}

	ts := l.tenant(pts.name)
	kss := make([]*keyState, len(a.keys))
	for i, k := range a.keys {
		kss[i] = ts.key(&l.o, k.id) // nil when the key lost its limit
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	now = l.now()
	ts.ov = a.ov
	ts.seen = ts.with(a.ov)
	if a.hasReq && ts.seen.rpm != Unlimited {
		ts.req.set(now, min(a.req, float64(ts.seen.burst)))
	}
	if a.hasTok && ts.seen.tpm > 0 {
		ts.tok.set(now, min(a.tok, float64(ts.seen.tpm)))
	}
	for i, ks := range kss {
		if ks != nil {
			ks.req.set(now, min(a.keys[i].level, float64(ks.lim.burst)))
			ks.owed += a.keys[i].owed
		} else {
			ts.owed += a.keys[i].owed // the key lost its limit: the tenant's bucket took them
		}
	}
	ts.owed += a.owed
	ts.owedTokens += a.owedTokens
}
