package upstream

import (
	"strconv"
	"sync"

	"github.com/stream-relay/stream-relay/internal/mono"
)

// Target is one upstream of a route: a base URL and the provider key sent to
// it. A route with several targets spreads requests over them by weight and
// fails over between them before the first byte.
type Target struct {
	// Name labels the target in metrics, logs and rows; default its index
	// in the list ("0", "1", ...). Never the key.
	Name        string
	URL         string // absolute http(s) base URL (required)
	ProviderKey string // "" with KeyEnv set: unset, the target is never picked
	KeyEnv      string // name of the variable, for messages
	Weight      int    // share among the primaries (or the backups); default 1
	// Backup targets serve only while no primary is available.
	Backup bool
}

// Failover conditions for FailoverOptions.On.
const (
	// FailoverConnect: no connection, or it closed (or was reset) before
	// the response headers, or after them before the body's first byte.
	FailoverConnect = "connect"
	// FailoverTimeout: no response headers within first_byte_timeout, or
	// no byte of the body within idle_timeout after them.
	FailoverTimeout = "timeout"
	Failover429     = "429" // the target answered 429
	Failover5xx     = "5xx" // the target answered 500..599
)

// MaxAttempts bounds FailoverOptions.MaxAttempts: the outcomes of one
// request's attempts live in a fixed array.
const MaxAttempts = 8

// FailoverOptions say when a request goes to another target. A request is
// re-sent only before its first byte went to the client.
type FailoverOptions struct {
	On          []string // default connect, timeout, 5xx
	MaxAttempts int      // targets tried per request, the first included; default 2
}

func (o *FailoverOptions) setDefaults() {
	if o.On == nil {
		o.On = []string{FailoverConnect, FailoverTimeout, Failover5xx}
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 2
	}
}

// failoverSet is FailoverOptions.On as flags.
type failoverSet struct{ connect, timeout, tooMany, server bool }

// target is a Target bound to its client: route is a copy of the parent
// route carrying this target's URL, client and key, so that the stream
// relays through the target's connection pool.
type target struct {
	Target
	route     *Route
	routeName string
	label     string // Name, or the index
	recName   string // what the row's upstream column says
	health    *health
	bit       uint64
	current   int // smooth weighted round-robin state; guarded by pool.mu
}

// pool picks a route's target for each attempt.
type pool struct {
	mu        sync.Mutex
	targets   []*target
	primaries int // targets[:primaries] are primaries, the rest backups
}

// pick returns the next target not in tried: smooth weighted round-robin
// among the available primaries with a free connection (below their
// max_conns), else among such backups, else among the available primaries
// and then backups whatever their connections (the attempt waits for one),
// else among those past their cool-down whose probe is out (rather than
// one still asking for a pause), else (every target cooling down) among
// all targets not tried, so that a route whose targets are all ejected
// still tries one rather than failing at once (Open retries only while
// left says so). nil when every configured target
// has been tried. probe: the pick is its target's probe (its cool-down is
// over). It does not allocate.
//
// A target at its max_conns is passed over while another has room, as
// nginx's max_conns does: its attempt would wait up to connect_timeout for
// a connection another request gives back, and then fail over, while the
// other target sat idle (and the row blamed the busy one's upstream).
func (p *pool) pick(tried uint64) (t *target, probe bool) {
	now := mono.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	prim, back := p.targets[:p.primaries], p.targets[p.primaries:]
	first := roomy
	if len(p.targets) == 1 {
		first = available // no other to prefer: no count to take
	}
	for need := first; need <= anyTarget && t == nil; need++ {
		if t = swrr(prim, tried, now, need); t == nil {
			t = swrr(back, tried, now, need)
		}
	}
	if t != nil {
		probe = t.health.claim(now)
	}
	return t, probe
}

// What swrr asks of a target, from the most to the least.
const (
	roomy     = iota // available, and below its max_conns
	available        // not ejected (or its probe is due)
	cooled           // past its cool-down, its probe maybe out (health.cooled)
	anyTarget        // configured
)

// meets reports whether t is what need asks at now.
func (t *target) meets(need int, now int64) bool {
	switch need {
	case roomy:
		return t.health.available(now) && !t.full()
	case available:
		return t.health.available(now)
	case cooled:
		return t.health.cooled(now)
	}
	return true
}

// full reports whether t's connections to its upstream are all taken: as
// many open as its max_conns, none idle.
func (t *target) full() bool {
	c, limit := t.route.client, t.route.MaxConns
	if c == nil || limit <= 0 {
		return false
	}
	return c.ConnsCount()-c.IdleConnsCount() >= limit
}

// left counts the targets a retry after those in tried may go to: the
// available ones not tried, or, with none available at all, those past
// their cool-down (their probe out). An ejected target's cool-down (an
// upstream's Retry-After) is kept by retries: with every target cooling
// down, a request still gets its one attempt (pick takes an ejected target
// then), but no other; before, each request went on to every ejected target up to
// max_attempts, hitting a provider that had asked for a pause that many
// times over, and waiting first_byte_timeout on each hung one.
func (p *pool) left(tried uint64) int {
	now := mono.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	// With a target available (tried or not), a retry goes only to an
	// available one: one whose probe is out is skipped, as by new
	// requests. With none, one past its cool-down (its probe out) may
	// take it, not one still in its cool-down.
	need := cooled
	if p.anyAvailable(now) {
		need = available
	}
	n := 0
	for _, t := range p.targets {
		if tried&t.bit == 0 && t.route.Configured() && t.meets(need, now) {
			n++
		}
	}
	return n
}

// anyAvailable reports whether a configured target is available at now.
// The caller holds p.mu.
func (p *pool) anyAvailable(now int64) bool {
	for _, t := range p.targets {
		if t.route.Configured() && t.health.available(now) {
			return true
		}
	}
	return false
}

// swrr is nginx's smooth weighted round-robin over the targets of ts that
// are not in tried and meet need: each gains its weight, the richest is
// picked and pays the total.
func swrr(ts []*target, tried uint64, now int64, need int) *target {
	var best *target
	total := 0
	for _, t := range ts {
		if tried&t.bit != 0 || !t.route.Configured() || !t.meets(need, now) {
			continue
		}
		t.current += t.Weight
		total += t.Weight
		if best == nil || t.current > best.current {
			best = t
		}
	}
	if best != nil {
		best.current -= total
	}
	return best
}

// newPool binds o's targets (o.Targets, or Upstream and ProviderKey as one
// target) to their clients.
func newPool(parent *Route, clients *Clients) (*pool, error) {
	ts := parent.Targets
	if len(ts) == 0 {
		ts = []Target{{URL: parent.Upstream, ProviderKey: parent.ProviderKey, KeyEnv: parent.KeyEnv}}
	}
	if len(ts) > 64 {
		return nil, errTooManyTargets(parent.Name, len(ts))
	}
	p := &pool{}
	var backups []*target
	for i, to := range ts {
		if to.Weight == 0 {
			to.Weight = 1
		}
		label := to.Name
		if label == "" {
			label = strconv.Itoa(i)
		}
		r, err := parent.forTarget(to, clients)
		if err != nil {
			return nil, err
		}
		t := &target{Target: to, route: r, routeName: parent.Name, label: label, health: &health{}, bit: 1 << i}
		t.recName = to.URL
		if len(ts) > 1 || to.Name != "" {
			t.recName = to.URL + "#" + label
		}
		if to.Backup {
			backups = append(backups, t)
		} else {
			p.targets = append(p.targets, t)
		}
	}
	p.primaries = len(p.targets)
	if p.primaries == 0 {
		return nil, errNoPrimary(parent.Name)
	}
	p.targets = append(p.targets, backups...)
	return p, nil
}

// UnsetTarget is a target of a route of several whose provider key
// variable is unset: it is never picked.
type UnsetTarget struct {
	Target, KeyEnv string // name or index, and the variable
}

// UnsetTargets returns the targets of r whose key is unset, when r has
// more than one (a route of one says so itself: Configured).
func (r *Route) UnsetTargets() []UnsetTarget {
	if len(r.pool.targets) < 2 {
		return nil
	}
	var out []UnsetTarget
	for _, t := range r.pool.targets {
		if !t.route.Configured() {
			out = append(out, UnsetTarget{Target: t.label, KeyEnv: t.route.KeyEnv})
		}
	}
	return out
}

// TargetStatus is one target's health, for metrics.
type TargetStatus struct {
	Route, Target string // route name, target name or index
	Healthy       bool
	Ejections     uint64 // ejections since the target was configured
}

// AppendTargets appends the status of every target of r to dst.
func (r *Route) AppendTargets(dst []TargetStatus) []TargetStatus {
	for _, t := range r.pool.targets {
		// A target without its key is never picked: not healthy.
		healthy := t.health.healthy() && t.route.Configured()
		dst = append(dst, TargetStatus{Route: r.Name, Target: t.label, Healthy: healthy, Ejections: t.health.ejections.Load()})
	}
	return dst
}

// Adopt takes over the passive health of the targets of old (a route of the
// configuration a reload replaces) that r still has unchanged: same route
// name, label, URL and key variable. An ejected target stays ejected, and its
// ejection count goes on.
func (r *Route) Adopt(old *Route) {
	if old == nil || old.Name != r.Name {
		return
	}
	for _, t := range r.pool.targets {
		for _, o := range old.pool.targets {
			if o.label != t.label {
				continue
			}
			if o.URL == t.URL && o.KeyEnv == t.KeyEnv && o.ProviderKey == t.ProviderKey {
				t.health = o.health
				continue
			}
			// Another target under the same label (an unnamed target's is
			// its index): it starts healthy, but its ejections go on from
			// the old count, relay_upstream_ejections_total{route,target}
			// being one series (it went down: a counter reset to Prometheus).
			t.health.ejections.Store(o.health.ejections.Load())
		}
	}
}
