package quota

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// tableShards spreads tenants over independently locked maps so that
// decisions for different tenants rarely contend.
const tableShards = 64

// table maps tenant names to their state. States are created once and never
// removed: tenants come from the relay's key configuration, a bounded set.
type table struct {
	seed   maphash.Seed
	shards [tableShards]shard
}

// shard uses an RWMutex because after a tenant's first request every lookup
// is a read; writers only appear when a new tenant shows up.
type shard struct {
	mu sync.RWMutex
	m  map[string]*tenantState
}

// tenantState is everything the limiter keeps per tenant: the Redis key names
// (built once so the hot path does not concatenate), the limits from the file
// and the last ones seen in Redis, and the in-process buckets.
type tenantState struct {
	name                           string
	reqKey, blkKey, tokKey, cfgKey string
	takeKeys                       []string // req, blk, tok: KEYS of the take script
	debitKeys                      []string // tok, blk, req

	reads atomic.Pointer[readCmds] // pinned cached reads, built on first use
	take  atomic.Pointer[takeCmd]  // pinned take script for the last limits
	renew atomic.Pointer[takeCmd]  // pinned renew script for the last limits
	// blkUntil is when the tenant's block ends, by its PTTL, asked when
	// the cached wait was at the cache's TTL (blockWait).
	blkUntil blockDeadline

	file       limits
	fixedBurst int64 // Options.Burst: 0 = each rate's minute's worth

	mu   sync.Mutex // guards the fields below
	seen limits     // limits of the last decision, overrides included; the local fallback uses them
	ov   override   // the overrides in seen, which Adopt carries over to a reload's limiter
	// ignored is, per field of the override hash, the last invalid value
	// logged (ignoredOverride).
	ignored [len(cfgWant)]ignoredValue
	req     bucket
	tok     bucket
	lease   lease // requests without a limited relay key
	keyed   map[string]*keyState
	// leaseGen counts the times the tenant's leases were dropped (new
	// limits, an invalidation, a switch to the fallback): a renewal that
	// began before the last drop brings tokens that must not be used.
	leaseGen uint64
	// untracked: the client-side cache was flushed (a reconnect) since
	// the tenant's override hash was last read, so Redis no longer tells
	// this relay when it changes. Its leases are not renewed until a
	// decision through Redis reads the hash again (remember).
	untracked bool
	// owed and owedTokens are what the fallback admitted and debited
	// in-process (requests without a limited relay key, tokens) while
	// Redis could not decide: charged to Redis on the way back
	// (chargeBack), so that an outage does not let the tenant spend the
	// buckets' levels again.
	owed, owedTokens int64
}

// keyState is a relay key's own request bucket within its tenant. Its keys
// share the tenant's hash tag, so the script can take from both atomically on
// Redis Cluster.
type keyState struct {
	lim      keyLimit
	reqKey   string
	blkKey   string
	takeKeys []string // req, blk, tok, key req, key blk
	req      bucket   // guarded by the tenant's mu
	lease    lease    // guarded by the tenant's mu
	owed     int64    // requests the fallback admitted (tenantState.owed); guarded by the tenant's mu

	reads    atomic.Pointer[readCmds]
	take     atomic.Pointer[takeCmd]
	renew    atomic.Pointer[takeCmd]
	blkUntil blockDeadline // as tenantState's
}

func (t *table) init() {
	t.seed = maphash.MakeSeed()
	for i := range t.shards {
		t.shards[i].m = make(map[string]*tenantState)
	}
}

// get returns the tenant's state, creating it on first use with mk.
func (t *table) get(name string, mk func(string) *tenantState) *tenantState {
	s := &t.shards[maphash.String(t.seed, name)%tableShards]
	s.mu.RLock()
	ts := s.m[name]
	s.mu.RUnlock()
	if ts != nil {
		return ts
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if ts = s.m[name]; ts == nil {
		ts = mk(name)
		s.m[name] = ts
	}
	return ts
}

// find returns the tenant's state, nil when it has none.
func (t *table) find(name string) *tenantState {
	s := &t.shards[maphash.String(t.seed, name)%tableShards]
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m[name]
}

// each calls f for every tenant, holding no lock of the table while f runs.
func (t *table) each(f func(*tenantState)) {
	var batch []*tenantState
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.RLock()
		batch = batch[:0]
		for _, ts := range s.m {
			batch = append(batch, ts)
		}
		s.mu.RUnlock()
		for _, ts := range batch {
			f(ts)
		}
	}
}

func newTenantState(o *Options, name string) *tenantState {
	tag := o.KeyPrefix + "{" + name + "}:"
	ts := &tenantState{
		name:       name,
		reqKey:     tag + "req",
		blkKey:     tag + "blk",
		tokKey:     tag + "tok",
		cfgKey:     tag + "cfg",
		file:       o.fileLimits(name),
		fixedBurst: int64(o.Burst),
		keyed:      make(map[string]*keyState),
	}
	ts.seen = ts.file
	ts.takeKeys = []string{ts.reqKey, ts.blkKey, ts.tokKey}
	ts.debitKeys = []string{ts.tokKey, ts.blkKey, ts.reqKey}
	return ts
}

// key returns the state of a relay key that has its own limit in
// Options.Keys, or nil. It takes ts.mu; the caller must not hold it.
func (ts *tenantState) key(o *Options, id string) *keyState {
	rpm, ok := o.Keys[id]
	if !ok {
		return nil
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ks := ts.keyed[id]; ks != nil {
		return ks
	}
	tag := o.KeyPrefix + "{" + ts.name + "}:k:" + id + ":"
	ks := &keyState{
		lim:    keyLimit{rpm: int64(rpm), burst: o.burstFor(int64(rpm))},
		reqKey: tag + "req",
		blkKey: tag + "blk",
	}
	ks.takeKeys = []string{ts.reqKey, ts.blkKey, ts.tokKey, ks.reqKey, ks.blkKey}
	ts.keyed[id] = ks
	return ks
}

// fileBurst is the capacity the file configuration gives a bucket of rpm.
func (ts *tenantState) fileBurst(rpm int64) int64 {
	if ts.fixedBurst > 0 {
		return ts.fixedBurst
	}
	return rpm
}

// limit returns the key's limit, nil for a nil key.
func (ks *keyState) limit() *keyLimit {
	if ks == nil {
		return nil
	}
	return &ks.lim
}
