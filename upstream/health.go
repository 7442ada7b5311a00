package upstream

import (
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/stream-relay/stream-relay/internal/ratelog"
	"github.com/valyala/fasthttp"
)

// HealthOptions configure the passive health of a route's targets: a target
// that fails MaxFails times in a row (connect error, reset or timeout before
// the response headers, or after them before the body's first byte, a 5xx,
// a 429 without Retry-After, an error event inside a 200 stream) is
// ejected for a cool-down; once it is over one probe request is let
// through, and its outcome brings the target back or ejects it again for
// twice as long.
//
// An answer counts as a success when the first byte of its body comes (or
// the body is empty): the stream is not awaited to its end. One whose
// stream then carries an error event (record.ErrUpstreamStreamError: an
// Anthropic overloaded_error, an OpenAI-style {"error":...}) is a failure
// after all, counted when the stream ends (target.failLate): it takes back
// what its success cleared, so that such streams in a row eject the target
// as failures before the head do.
type HealthOptions struct {
	MaxFails    int           // consecutive failures that eject; default 3
	Cooldown    time.Duration // first ejection; default 10s
	MaxCooldown time.Duration // the doubling stops here; default 5m
}

func (o *HealthOptions) setDefaults() {
	if o.MaxFails == 0 {
		o.MaxFails = 3
	}
	if o.Cooldown == 0 {
		o.Cooldown = 10 * time.Second
	}
	if o.MaxCooldown == 0 {
		o.MaxCooldown = 5 * time.Minute
	}
	o.MaxCooldown = max(o.MaxCooldown, o.Cooldown)
}

// health is one target's passive health. It outlives a reload when the
// target is unchanged (see Route.Adopt), so that an ejected target stays
// ejected and its counters keep counting.
type health struct {
	// until is when the ejection ends, on the monotonic clock (mono.Now);
	// 0: healthy.
	until atomic.Int64
	// probing: the cool-down is over and one request is out to see whether
	// the target is back; others skip it meanwhile.
	probing   atomic.Bool
	fails     atomic.Int32
	ejections atomic.Uint64
	// epoch counts the ejections and their lengthenings (a later failure
	// or 429 while ejected), under mu: a success of an attempt picked at
	// an earlier epoch does not end the ejection (succeed).
	epoch atomic.Uint64
	// successes counts successes, so that a late failure can tell whether
	// another success came after the one it turns into a failure.
	successes atomic.Uint64

	// A target that flaps (a provider failing every other request) is
	// ejected and back every few requests: an ejection no longer than
	// healthLogEvery is logged once per healthLogEvery at most (the next
	// line says how many were not), a longer one always, and a return when
	// the ejection it ends was (ejectLogged), so that the last line of a
	// target never says the opposite of a state that lasts. The metrics
	// count every one.
	ejectLog    ratelog.Every
	ejectLogged atomic.Bool

	mu       sync.Mutex // serializes ejections and returns
	cooldown time.Duration
}

// outcome is what one attempt tells about its target.
type outcome uint8

const (
	outcomeOK      outcome = iota // answered (any status but 5xx and 429)
	outcomeFailed                 // connect, reset, timeout, 5xx, 429 without Retry-After
	outcomeNeutral                // the client left: says nothing about the target
)

// available reports whether t may be picked now: healthy, or past its
// cool-down with no probe out. Called under the pool's mutex.
func (h *health) available(now int64) bool {
	u := h.until.Load()
	return u == 0 || now >= u && !h.probing.Load()
}

// cooled reports whether the target is past its cool-down (or not
// ejected): its probe may be out.
func (h *health) cooled(now int64) bool {
	u := h.until.Load()
	return u == 0 || now >= u
}

// claim marks the pick of a target past its cool-down as its probe, and
// reports whether it did. Called under the pool's mutex, after available.
func (h *health) claim(now int64) bool {
	// CompareAndSwap: a reload's new pool shares the health of an
	// unchanged target (Adopt) under a mutex of its own.
	u := h.until.Load()
	return u != 0 && now >= u && h.probing.CompareAndSwap(false, true)
}

// healthy reports whether the target is not ejected (a probe counts as
// ejected until it succeeds).
func (h *health) healthy() bool { return h.until.Load() == 0 }

// picked is what an attempt's pick knew of its target: whether it was its
// probe (pool.pick said so), and its health's epoch then (its ejections
// and their lengthenings).
type picked struct {
	probe bool
	epoch uint64
}

// report accounts one attempt, picked as p. retryAfter > 0 (a 429 carrying Retry-After) ejects
// at once for that long. Only the probe's own outcome ends the probe: a
// request that reached the target otherwise (picked before its ejection,
// or with every target ejected) neither lets a second probe through by
// leaving nor doubles the cool-down by failing.
func (t *target) report(o outcome, p picked, retryAfter time.Duration, ho *HealthOptions, log *slog.Logger, why string) {
	// A probe overtaken by a later ejection or lengthening (whose failure
	// ended its claim) says nothing of the probe let through since.
	probe := p.probe && p.epoch == t.health.epoch.Load()
	switch o {
	case outcomeNeutral:
		if probe {
			t.health.probing.Store(false)
		}
	case outcomeOK:
		t.succeed(p, log)
	default:
		t.fail(cleared{}, retryAfter, ho, log, why, probe)
	}
}

// cleared is what a success took from its target's health: the count of
// failures in a row it reset, and the cool-down of the ejection it ended
// when it was the probe (0: it ended none), and which success it was (seq).
// A stream found failed later gives them back (failLate) unless another
// success came since.
type cleared struct {
	fails    int32
	cooldown time.Duration
	seq      uint64
}

// succeed accounts a success of an attempt picked as p: the failures in a
// row start over, and the probe, or a request picked while the target was
// ejected (every target was), brings it back. One picked before the
// ejection, or before its last lengthening (in flight when a 429 with
// Retry-After or failures in a row ejected it or made it longer), does not
// end it (a probe so overtaken had its claim ended by that failure: fail).
func (t *target) succeed(p picked, log *slog.Logger) cleared {
	h := t.health
	c := cleared{fails: h.fails.Swap(0), seq: h.successes.Add(1)}
	if h.until.Load() == 0 {
		return c
	}
	h.mu.Lock()
	if h.epoch.Load() != p.epoch { // ejected, or ejected longer, since it was picked
		h.mu.Unlock()
		return c
	}
	back := h.until.Load() != 0
	if back {
		c.cooldown = h.cooldown
	}
	h.until.Store(0)
	h.probing.Store(false)
	h.cooldown = 0
	h.mu.Unlock()
	if back && h.ejectLogged.Swap(false) {
		log.Info("upstream target healthy again", "route", t.routeName, "target", t.label)
	}
	return c
}

// failLate accounts an attempt counted a success (succeed, which cleared
// c) as the failure it turned out to be: its stream carried an error
// event. When no other success came since, the failures its success reset
// count again, with this one, and a probe it was ejects its target again
// for twice the cool-down, as a probe that fails at once does (unless the
// target was ejected since). After another success it is one failure in a
// row. It is never taken for the failure of a probe out meanwhile.
func (t *target) failLate(c cleared, ho *HealthOptions, log *slog.Logger, why string) {
	if t.health.successes.Load() != c.seq {
		c = cleared{}
	}
	t.fail(c, 0, ho, log, why, false)
}

// fail accounts a failure, on top of the ones a success cleared (c);
// probe: of its target's probe, still out (not a late failure: failLate).
func (t *target) fail(c cleared, retryAfter time.Duration, ho *HealthOptions, log *slog.Logger, why string, probe bool) {
	h := t.health
	n := h.fails.Add(1 + c.fails)
	probe = probe && h.probing.Load()
	reprobe := c.cooldown > 0 && h.until.Load() == 0
	if retryAfter <= 0 && int(n) < ho.MaxFails && !probe && !reprobe {
		return
	}
	h.mu.Lock()
	d := retryAfter
	if d <= 0 {
		switch {
		case reprobe && h.cooldown == 0 && h.until.Load() == 0:
			h.cooldown = min(2*c.cooldown, ho.MaxCooldown)
		case h.cooldown == 0:
			h.cooldown = ho.Cooldown
		case probe:
			h.cooldown = min(2*h.cooldown, ho.MaxCooldown)
		}
		d = h.cooldown
	}
	d = min(d, ho.MaxCooldown)
	fresh := h.until.Load() == 0 || probe
	// An ejection under way is never shortened: a 429's Retry-After
	// stands against the failures of requests that were in flight.
	h.epoch.Add(1)
	h.until.Store(max(mono.Now()+int64(d), h.until.Load()))
	h.probing.Store(false)
	h.fails.Store(0)
	h.mu.Unlock()
	if fresh {
		h.ejections.Add(1)
		var n int64
		logged := d > healthLogEvery // a long one always: the last line must not say "healthy again"
		if !logged {
			logged, n = h.ejectLog.Allow(healthLogEvery)
		}
		if logged || !probe {
			// A failed probe's new ejection, not logged, continues the
			// one before: whether that was logged still stands, so that
			// the return after it is logged when its ejection was.
			h.ejectLogged.Store(logged)
		}
		if logged {
			log.Warn("upstream target ejected", "route", t.routeName, "target", t.label,
				"reason", why, "for", d.String(), "short_ejections_not_logged", n)
		}
	}
}

// healthLogEvery spaces out a target's ejection and return log lines.
const healthLogEvery = 10 * time.Second

// maxRetryAfter (seconds, a year) bounds a Retry-After's delay before it
// becomes a Duration.
const maxRetryAfter = 365 * 24 * 3600

// retryAfter parses a Retry-After header: delay seconds or an HTTP date.
// 0 when absent or unparsable.
func retryAfter(h *fasthttp.ResponseHeader) time.Duration {
	v := h.Peek(fasthttp.HeaderRetryAfter)
	if len(v) == 0 {
		return 0
	}
	if n, err := strconv.Atoi(string(v)); err == nil { // a 429 only: not the hot path
		if n <= 0 {
			return 0
		}
		// Past what a Duration holds (292 years) it would wrap negative
		// and read as none; any cool-down is capped at max_cooldown.
		return time.Duration(min(n, maxRetryAfter)) * time.Second
	}
	if at, err := time.Parse(time.RFC1123, string(v)); err == nil {
		return time.Until(at)
	}
	return 0
}
