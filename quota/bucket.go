package quota

import (
	"math"
	"time"
)

// bucket is one in-process token bucket. Its owner's mutex guards it. The
// refill arithmetic is the same as in bucket.lua, so a tenant sees the same
// limits whether Redis or the process decides.
type bucket struct {
	tokens float64
	last   float64 // ms on the limiter's monotonic clock; 0 = never touched (full)
}

// level returns the bucket's tokens refilled to now without storing them.
func (b *bucket) level(now, perMs, capacity float64) float64 {
	if b.last == 0 {
		return capacity
	}
	x := b.tokens
	if now > b.last {
		x += (now - b.last) * perMs
	}
	return math.Min(x, capacity)
}

func (b *bucket) set(now, tokens float64) {
	b.tokens, b.last = tokens, now
}

// perMs converts a per-minute rate to tokens per millisecond.
func perMs(perMinute int64) float64 { return float64(perMinute) / 60000 }

// levels are the token counts of a tenant's buckets after refill and before
// this request takes anything. Both the script and the local path produce
// them; decide turns them into a Decision.
type levels struct {
	req, key, tok float64
}

// keyLimit is a relay key's own request bucket, nil when the key has none.
type keyLimit struct {
	rpm, burst int64
}

// admits reports whether a request may pass with these levels: every request
// bucket holds a whole token and the token budget is not exhausted.
func admits(lim limits, kl *keyLimit, lv levels) bool {
	return (lim.rpm == Unlimited || lv.req >= 1) &&
		(kl == nil || lv.key >= 1) &&
		(lim.tpm <= 0 || lv.tok > 0)
}

// waits returns how long the tenant-level buckets (request and token) and the
// key bucket need until they would admit, in whole milliseconds, 0 when they
// admit now. bucket.lua computes the same numbers for the blocked-until keys.
func waits(lim limits, kl *keyLimit, lv levels) (tenantMs, keyMs float64) {
	if lim.rpm != Unlimited && lv.req < 1 {
		tenantMs = math.Ceil((1 - lv.req) / perMs(lim.rpm))
	}
	if lim.tpm > 0 && lv.tok <= 0 {
		tenantMs = math.Max(tenantMs, math.Floor(-lv.tok/perMs(lim.tpm))+1)
	}
	if kl != nil && lv.key < 1 {
		keyMs = math.Ceil((1 - lv.key) / perMs(kl.rpm))
	}
	return tenantMs, keyMs
}

// decide builds the Decision for levels; allowed is the verdict (admits, or
// the script's). Limit, Remaining and Reset describe the request bucket with
// the fewest whole tokens left: the tenant's, or the key's when that is
// tighter. Reset is the time until that bucket is full again.
func decide(lim limits, kl *keyLimit, lv levels, allowed bool, src Source) Decision {
	d := Decision{Allowed: allowed, Source: src}
	var capacity, x, rate float64
	have := false
	if lim.rpm != Unlimited {
		capacity, x, rate, have = float64(lim.burst), lv.req, perMs(lim.rpm), true
	}
	if kl != nil && (!have || math.Floor(lv.key) < math.Floor(x)) {
		capacity, x, rate, have = float64(kl.burst), lv.key, perMs(kl.rpm), true
	}
	if allowed {
		x--
	}
	if have {
		d.Limit = int(capacity)
		d.Reset = msDuration(math.Ceil((capacity - x) / rate))
		if allowed {
			d.Remaining = int(math.Max(0, math.Floor(x)))
		}
	}
	if !allowed {
		t, k := waits(lim, kl, lv)
		d.RetryAfter = msDuration(math.Max(t, k))
		d.Reset = max(d.Reset, d.RetryAfter)
	}
	return d
}

// blockedDecision is a refusal answered from a cached blocked-until key
// (keyBlocked: the relay key's, else the tenant's), b what it says. It
// reports the bucket decide would: the key's when it is the key's block or
// the tenant has no request bucket, else the tenant's; Reset is when that
// bucket is full again, as the key's value says (the block may be the
// token budget's, the request bucket anywhere); a value of an older relay
// says nothing, and the bucket held less than one token when it was
// written: full one token interval per missing token after the block.
func blockedDecision(lim limits, kl *keyLimit, keyBlocked bool, b block, src Source) Decision {
	d := Decision{Source: src, RetryAfter: b.wait, Reset: b.wait}
	rpm, burst := lim.rpm, lim.burst
	if kl != nil && (keyBlocked || rpm == Unlimited) {
		rpm, burst = kl.rpm, kl.burst
	}
	if rpm == Unlimited {
		return d
	}
	d.Limit = int(burst)
	switch {
	case b.after >= 0:
		d.Reset += b.after
	case b.after == afterUnknown:
		d.Reset += msDuration(math.Ceil(float64(burst-1) / perMs(rpm)))
	}
	return d
}

func msDuration(ms float64) time.Duration {
	if ms <= 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}
