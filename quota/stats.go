package quota

import "sync/atomic"

// Stats are the limiter's counters since New, as plain numbers for the
// metrics package. Arrays are indexed by Source.
type Stats struct {
	// Admitted and Refused count decisions by what decided them.
	Admitted [NumSources]uint64
	Refused  [NumSources]uint64
	// ToFallback counts switches from Redis to OnRedisError (including a
	// start without a reachable Redis); ToRedis counts switches back.
	ToFallback uint64
	ToRedis    uint64
	// RedisErrors counts failed or timed-out Redis calls.
	RedisErrors uint64
	// Leases counts Redis script runs that took a lease (more than one
	// token), renewals included; LeaseRenewals counts the renewals taken in
	// the background (Options.RenewBelow); LeaseTokensReturned counts
	// unused leased tokens given back.
	Leases              uint64
	LeaseRenewals       uint64
	LeaseTokensReturned uint64
	// ChargedBack counts requests the fallback admitted in-process that
	// were charged to Redis once it decided again (chargeBack).
	ChargedBack uint64
}

type counters struct {
	admitted    [NumSources]atomic.Uint64
	refused     [NumSources]atomic.Uint64
	toFallback  atomic.Uint64
	toRedis     atomic.Uint64
	redisErrors atomic.Uint64
	leases      atomic.Uint64
	renewals    atomic.Uint64
	gaveBack    atomic.Uint64
	chargedBack atomic.Uint64
}

func (c *counters) count(d Decision) {
	if d.Allowed {
		c.admitted[d.Source].Add(1)
	} else {
		c.refused[d.Source].Add(1)
	}
}

// Stats returns a snapshot of the counters.
func (l *Limiter) Stats() Stats {
	var s Stats
	for i := range s.Admitted {
		s.Admitted[i] = l.stats.admitted[i].Load()
		s.Refused[i] = l.stats.refused[i].Load()
	}
	s.ToFallback = l.stats.toFallback.Load()
	s.ToRedis = l.stats.toRedis.Load()
	s.RedisErrors = l.stats.redisErrors.Load()
	s.Leases = l.stats.leases.Load()
	s.LeaseRenewals = l.stats.renewals.Load()
	s.LeaseTokensReturned = l.stats.gaveBack.Load()
	s.ChargedBack = l.stats.chargedBack.Load()
	return s
}

// Add adds o's counters to s: the counters of several limiters (one a
// reload replaced and the one that took over) as one limiter's.
func (s *Stats) Add(o Stats) {
	for i := range s.Admitted {
		s.Admitted[i] += o.Admitted[i]
		s.Refused[i] += o.Refused[i]
	}
	s.ToFallback += o.ToFallback
	s.ToRedis += o.ToRedis
	s.RedisErrors += o.RedisErrors
	s.Leases += o.Leases
	s.LeaseRenewals += o.LeaseRenewals
	s.LeaseTokensReturned += o.LeaseTokensReturned
	s.ChargedBack += o.ChargedBack
}
