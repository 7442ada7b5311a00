// Package quota admits or refuses each relay request per tenant with token
// buckets, and charges finished streams against an optional per-tenant token
// budget.
//
// Usage:
//
//	l, err := quota.New(quota.Options{RedisAddr: "127.0.0.1:6379", Default: 600})
//	d := l.Take(ctx, tenant, keyID)   // once per request, before any upstream byte
//	if !d.Allowed { /* 429 with d.RetryAfter */ }
//	l.Debit(ctx, tenant, usage.TotalTokens) // after the stream ends
//	st := l.Stats()                   // counters for the metrics package
//	next.Adopt(l)                     // a reload's new limiter carries l's buckets on
//	l.Close()                         // at shutdown
//
// With a Redis address the buckets live in Redis and are taken by one Lua
// script that refills them with the server's clock, so every relay instance
// shares one budget per tenant. Refusals and per-tenant limit overrides are
// read through rueidis client-side caching (RESP3 tracking): a refused tenant
// is refused again without a round trip until its next token is due. When
// Redis is unreachable, slower than Options.Timeout or refuses the script's
// writes (out of memory, a read-only replica) the limiter switches to
// Options.OnRedisError (in-process buckets by default) and switches back once
// a probe run of the script succeeds (probe.go). Take never fails: a Redis
// outage never becomes a relay error.
//
// The Redis path is built for the relay's hot path: each tenant's reads and
// its take script are pinned rueidis commands built once, the script replies
// with integers, and calls share deadline contexts, so an admitted decision
// allocates twice and a cached refusal once. Concurrent decisions share the
// round trips of one pipelined connection per Redis node.
//
// Leases (Options.Lease, default 16) spare most admissions the round trip:
// while a tenant's buckets would stay at least half full, the script debits
// up to Lease tokens at once and the relay admits the next requests of that
// tenant (and relay key) from them, without Redis and without allocating
// (Source "lease"). Near the limit every request is decided by the script as
// before, so shared counts stay exact; a lease's unused tokens go back to
// the buckets when it expires (Options.LeaseTTL) or when the tenant's
// override hash or (with a token budget) its blocked-until key changes. A
// lease that a busy tenant uses up fast is renewed in the background before
// it runs out (Options.RenewBelow, renew.go), so that tenant's requests do
// not wait for Redis at all; its leases double while it uses them up within
// an eighth of their time and halve when one expires mostly unused, between
// Lease and Options.LeaseMax (lease.go).
//
// Without a Redis address (the embedded default) the same bucket semantics run
// in process.
//
// README.md in this directory explains the token budget and how an operator
// changes a tenant's limit with HSET.
package quota
