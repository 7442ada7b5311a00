package quota

import (
	"context"
	"log/slog"
	"strconv"
	"time"
)

// The probe decides when a limiter in fallback goes back to Redis. It must
// test what a decision needs, not merely that Redis answers: a Redis out of
// memory (maxmemory with the noeviction policy) or a read-only replica
// answers PING and every read, but refuses the bucket script's writes. A
// probe that took an answer for "reachable" switched back to such a Redis
// every probe interval, and the next decision's script failed and switched
// to the fallback again: a warning and an info line, and a switch each way,
// every second. So the probe runs the take script itself, on a bucket of its
// own.

// Arguments of the probe's take: a bucket of 60000 tokens refilled at one a
// millisecond, so the probe is always admitted and the one token it takes is
// back a millisecond later: the script expires the bucket (PEXPIRE) about a
// second after.
const (
	probeRPM   = 60000
	probeBurst = 60000
)

var probeArgs = []string{"take", strconv.Itoa(probeRPM), strconv.Itoa(probeBurst), "0", "1"}

// probeKeys are the KEYS of the probe's take script, in the hash tag of
// ts's keys so that on a Redis Cluster the probe asks the node that owns
// the tenant whose decision failed (nil ts: no tenant yet, a start without
// Redis; a tag of their own). A script's keys must share a slot on a
// Redis Cluster: three untagged keys did not, and rueidis's cluster client
// panicked on them (the process died once the cluster came back).
func (o *Options) probeKeys(ts *tenantState) []string {
	tag := "{probe}"
	if ts != nil {
		tag = "{" + ts.name + "}"
	}
	base := o.KeyPrefix + tag + ":probe"
	return []string{base, base + ":blk", base + ":tok"}
}

// startProbe starts the probe with keys. The caller holds l.life and has
// checked that the limiter is not closed.
func (l *Limiter) startProbe(keys []string) {
	l.probing = keys
	l.wg.Add(1)
	go l.probe(keys)
}

// probe runs the take script on its keys every ProbeInterval while in
// fallback and switches back to Redis once it succeeds. On a Redis Cluster
// any node answers PING, even one that refuses every key (CLUSTERDOWN) or
// beside a dead master; the script runs on the node that owns the failed
// tenant's slot (probeKeys), so a cluster that lost a master is not taken
// back until it heals.
func (l *Limiter) probe(keys []string) {
	defer l.wg.Done()
	t := time.NewTicker(l.o.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		if err := l.redis.decides(keys); err != nil {
			// An adopted limiter leaves the muted outage to the one that
			// took it over (its warning, from its own probe).
			if !l.adopted.Load() {
				if warn, muted := l.switchLog.stillDown(time.Now()); warn {
					l.logDown(slog.LevelWarn, muted, err)
				}
			}
			continue
		}
		// The level before the switch: a decision failing right after it
		// starts the next outage, whose mute toRedis must not clear.
		// The fallback's admissions are charged first: the first decisions
		// through Redis see the buckets with them taken.
		l.chargeBack()
		lv := l.switchLog.toRedis()
		if l.owesSwitch.Swap(false) {
			l.stats.toRedis.Add(1) // not a limiter that handed its outage over (Adopt)
		}
		l.up.Store(true)
		if l.adopted.Load() {
			// A reload's limiter took over (Adopt) and logs the switch.
			lv = slog.LevelDebug
		}
		l.o.Logger.Log(context.Background(), lv, "quota: redis reachable again, deciding by redis", "redis_addr", l.o.RedisAddr)
		l.chargeBack() // what the fallback admitted during the first
		return
	}
}

// decides reports whether Redis runs the take script on keys within
// Timeout: it answers, serves their slot, knows or loads the script and
// accepts its writes.
func (s *redisStore) decides(keys []string) error {
	if err := s.connect(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Timeout)
	defer cancel()
	c := s.client()
	cmd := c.B().Evalsha().Sha1(bucketSHA).Numkeys(int64(len(keys))).Key(keys...).Arg(probeArgs...).Build()
	_, _, _, err := parseTake(runScript(ctx, c, cmd, keys, probeArgs))
	return err
}
