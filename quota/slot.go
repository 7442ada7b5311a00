package quota

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// slotUnavailable reports whether err is Redis Cluster's answer that one
// hash slot cannot take the script for now, the rest of the cluster well:
// TRYAGAIN (the slot migrates between two nodes, and a script of several
// keys finds some of them missing, as the bucket script always does: from
// the slot's MIGRATING until its move ends), or, for a slot no node serves
// (cluster-require-full-coverage no), CLUSTERDOWN or rueidis' ErrNoSlot.
// That slot's tenants are decided by the fallback request by request; the
// whole limiter switching to it (and the probe, whose keys share the
// tenant's slot, failing until the slot was back) put every tenant of
// every node on on_redis_error for as long. (A shard that dies shows first
// as its node refusing connections: that still switches the whole
// limiter, and its probe waits for that shard.)
func slotUnavailable(err error) bool {
	if errors.Is(err, rueidis.ErrNoSlot) {
		return true
	}
	re, ok := rueidis.IsRedisErr(err)
	if !ok {
		return false
	}
	return re.IsTryAgain() || re.IsClusterDown() && strings.Contains(strings.ToLower(re.Error()), "slot")
}

// slotFailed counts a decision a hash slot could not take (slotUnavailable)
// and logs it, one line per slotLogEvery with the count it stands for.
func (l *Limiter) slotFailed(err error) {
	l.stats.redisErrors.Add(1)
	if ok, more := l.slotLog.Allow(slotLogEvery); ok {
		l.o.Logger.Log(context.Background(), slog.LevelWarn,
			"quota: a Redis Cluster hash slot cannot decide for now (migrating, or its shard down): its tenants' requests are decided by the fallback one by one, the others' by Redis",
			"on_redis_error", l.o.OnRedisError, "err", err, "more_since_last_line", more)
	}
}

// slotLogEvery spaces slotFailed's log lines.
const slotLogEvery = 10 * time.Second
