package upstream

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/valyala/fasthttp"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// poolRoute is a route over targets that are never dialed: picking needs
// no network.
func poolRoute(t testing.TB, ts ...Target) *Route {
	t.Helper()
	for i := range ts {
		if ts[i].URL == "" {
			ts[i].URL = "http://127.0.0.1:1"
		}
	}
	r, err := NewRoute(Options{Name: "r", Path: "/p", Targets: ts, Logger: quiet}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func counts(r *Route, n int) map[string]int {
	got := map[string]int{}
	for range n {
		got[pickOne(r.pool, 0).label]++
	}
	return got
}

func TestSmoothWeightedRoundRobin(t *testing.T) {
	r := poolRoute(t, Target{Name: "a", Weight: 3}, Target{Name: "b", Weight: 1}, Target{Name: "c", Backup: true})
	if got := counts(r, 1000); got["a"] != 750 || got["b"] != 250 || got["c"] != 0 {
		t.Fatalf("picks %v, want a 750, b 250, c 0", got)
	}
	// Smooth: b never waits more than 3 picks, a never runs 4 in a row.
	var seq []byte
	for range 8 {
		seq = append(seq, pickOne(r.pool, 0).label[0])
	}
	for i := 0; i+4 <= len(seq); i++ {
		if string(seq[i:i+4]) == "aaaa" {
			t.Fatalf("sequence %s is not smooth", seq)
		}
	}
}

func TestPickSkipsTriedAndUnconfigured(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "nokey", KeyEnv: "UNSET"}, Target{Name: "b"})
	if got := counts(r, 100); got["nokey"] != 0 || got["a"] != 50 || got["b"] != 50 {
		t.Fatalf("picks %v", got)
	}
	a := r.pool.targets[0]
	if tt := pickOne(r.pool, a.bit); tt == nil || tt.label != "b" {
		t.Fatalf("pick after a = %v, want b", tt)
	}
	if tt := pickOne(r.pool, a.bit|r.pool.targets[2].bit); tt != nil {
		t.Fatalf("pick with all tried = %s, want nil", tt.label)
	}
}

func TestPassiveHealthEjectsAndProbes(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"}, Target{Name: "backup", Backup: true})
	r.Health.Cooldown = 50 * time.Millisecond
	a, b := r.pool.targets[0], r.pool.targets[1]
	fail := func(t *target) { t.report(outcomeFailed, pickedNow(t, false), 0, &r.Health, quiet, "test") }
	fail(a)
	fail(a)
	if !a.health.healthy() {
		t.Fatal("ejected after 2 failures, max_fails is 3")
	}
	a.report(outcomeOK, pickedNow(a, false), 0, &r.Health, quiet, "")
	fail(a)
	fail(a)
	if !a.health.healthy() {
		t.Fatal("a success must reset the consecutive failures")
	}
	fail(a)
	if a.health.healthy() || a.health.ejections.Load() != 1 {
		t.Fatal("not ejected after 3 consecutive failures")
	}
	if got := counts(r, 10); got["b"] != 10 {
		t.Fatalf("picks while a is ejected: %v", got)
	}
	for range 3 {
		fail(b)
	}
	if got := counts(r, 10); got["backup"] != 10 {
		t.Fatalf("picks while every primary is ejected: %v, want the backup", got)
	}
	time.Sleep(60 * time.Millisecond) // both cool-downs over
	p1, p2, p3 := pickOne(r.pool, 0), pickOne(r.pool, 0), pickOne(r.pool, 0)
	if p1.label == "backup" || p2.label == "backup" || p1 == p2 || p3.label != "backup" {
		t.Fatalf("after the cool-down: %s %s %s, want one probe each to a and b, then the backup", p1.label, p2.label, p3.label)
	}
	a.report(outcomeFailed, pickedNow(a, true), 0, &r.Health, quiet, "test") // a's probe fails: twice the cool-down
	b.report(outcomeOK, pickedNow(b, false), 0, &r.Health, quiet, "")
	if !b.health.healthy() || a.health.healthy() || a.health.cooldown != 100*time.Millisecond || a.health.ejections.Load() != 2 {
		t.Fatalf("b healthy %v, a healthy %v cooldown %v ejections %d", b.health.healthy(), a.health.healthy(), a.health.cooldown, a.health.ejections.Load())
	}
	// Every target ejected: one is still tried rather than none.
	for range 3 {
		fail(b)
	}
	fail(r.pool.targets[2])
	fail(r.pool.targets[2])
	fail(r.pool.targets[2])
	if tt := pickOne(r.pool, 0); tt == nil {
		t.Fatal("nothing picked with every target ejected")
	}
}

func TestRetryAfterEjectsForThatLong(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	a := r.pool.targets[0]
	var h fasthttp.ResponseHeader
	h.Set("Retry-After", "1")
	a.report(outcomeFailed, pickedNow(a, false), retryAfter(&h), &r.Health, quiet, "status 429")
	if a.health.healthy() {
		t.Fatal("a 429 with Retry-After must eject at once")
	}
	// On the monotonic clock (mono.Now), not the wall clock's Unix
	// nanoseconds: a step of the wall clock back made an ejection last
	// that much longer than its cool-down.
	if left := time.Duration(a.health.until.Load() - mono.Now()); left < 900*time.Millisecond || left > time.Second {
		t.Fatalf("ejected for %v, want 1s on the monotonic clock", left)
	}
	h.Set("Retry-After", time.Now().Add(3*time.Second).UTC().Format(time.RFC1123))
	if d := retryAfter(&h); d < time.Second || d > 3*time.Second {
		t.Fatalf("Retry-After as a date: %v", d)
	}
}

func TestFailsOverOn(t *testing.T) {
	r := poolRoute(t, Target{}, Target{})
	tests := []struct {
		errType string
		code    int
		want    bool
	}{
		{"upstream_connect", 0, true}, {"upstream_reset", 0, true}, {"upstream_timeout", 0, true},
		{"client_closed", 0, false}, {"", 200, false}, {"", 404, false}, {"", 429, false},
		{"", 500, true}, {"", 503, true},
	}
	for _, tt := range tests {
		if got := r.failsOverOn(tt.errType, tt.code); got != tt.want {
			t.Errorf("failsOverOn(%q, %d) = %v, want %v (defaults)", tt.errType, tt.code, got, tt.want)
		}
	}
}

func TestAppendAttempts(t *testing.T) {
	tries := []attempt{{label: "a", errType: "upstream_connect"}, {label: "b", status: 200}}
	got := string(appendAttempts([]byte(`{"content-type":"text/event-stream"}`), tries, false))
	if want := `{"content-type":"text/event-stream","x-relay-attempts":"a=upstream_connect b=200"}`; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	if got := string(appendAttempts([]byte(`{}`), tries, false)); got != `{"x-relay-attempts":"a=upstream_connect b=200"}` {
		t.Errorf("empty object: %s", got)
	}
	if got := string(appendAttempts(nil, tries[:1], true)); got != "" {
		t.Errorf("one failed attempt alone: %q, want nothing", got)
	}
	if got := string(appendAttempts(nil, tries, true)); got != `{"x-relay-attempts":"a=upstream_connect b=200"}` {
		t.Errorf("alone: %s", got)
	}
}

func TestAdoptKeepsHealthOfUnchangedTargets(t *testing.T) {
	old := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	for range 3 {
		old.pool.targets[0].report(outcomeFailed, pickedNow(old.pool.targets[0], false), 0, &old.Health, quiet, "test")
	}
	next := poolRoute(t, Target{Name: "a"}, Target{Name: "b", URL: "http://127.0.0.1:2"})
	next.Adopt(old)
	if next.pool.targets[0].health != old.pool.targets[0].health || next.pool.targets[1].health == old.pool.targets[1].health {
		t.Fatal("a (unchanged) must keep its health, b (new URL) must not")
	}
	// A changed target under the old label starts healthy, its ejections
	// counted on from the old target's: the metric is one counter series.
	old2 := poolRoute(t, Target{}, Target{})
	for range 3 {
		old2.pool.targets[1].report(outcomeFailed, pickedNow(old2.pool.targets[1], false), 0, &old2.Health, quiet, "test")
	}
	next2 := poolRoute(t, Target{}, Target{URL: "http://127.0.0.1:3"})
	next2.Adopt(old2)
	st := next2.AppendTargets(nil)
	if len(st) != 2 || st[1].Target != "1" || st[1].Ejections != 1 || !st[1].Healthy {
		t.Fatalf("target 1 after a URL change: %+v; want healthy with the old target's 1 ejection", st)
	}
}

// pickOne is pool.pick's target, without whether it is a probe.
func pickOne(p *pool, tried uint64) *target {
	t, _ := p.pick(tried)
	return t
}

// TestProbeOnlyEndedByItself: while a target's probe is out, another
// request that reached the target (picked before its ejection, or with
// every target ejected) neither lets a second probe through by leaving nor
// doubles the cool-down by failing; the probe's own failure does.
func TestProbeOnlyEndedByItself(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	r.Health.Cooldown = 50 * time.Millisecond
	a := r.pool.targets[0]
	for range 3 {
		a.report(outcomeFailed, pickedNow(a, false), 0, &r.Health, quiet, "test")
	}
	if a.health.healthy() {
		t.Fatal("not ejected after 3 failures")
	}
	time.Sleep(60 * time.Millisecond)
	var probe bool
	for i := 0; ; i++ {
		var tt *target
		if tt, probe = r.pool.pick(0); tt == a {
			break
		}
		if i == 10 {
			t.Fatal("a not picked after its cool-down")
		}
	}
	if !probe {
		t.Fatal("the first pick of a after its cool-down is not its probe")
	}
	// Another request to a (not the probe) whose client leaves.
	a.report(outcomeNeutral, pickedNow(a, false), 0, &r.Health, quiet, "client left")
	for range 10 {
		if tt, p := r.pool.pick(0); tt == a || p {
			t.Fatalf("picked %s (probe %v) while a's probe is out", tt.label, p)
		}
	}
	// Another request to a fails: one failure, not the probe's.
	a.report(outcomeFailed, pickedNow(a, false), 0, &r.Health, quiet, "test")
	if a.health.cooldown != 50*time.Millisecond || !a.health.probing.Load() {
		t.Fatalf("after a failure that is not the probe's: cool-down %v, probing %v; want 50ms, the probe still out", a.health.cooldown, a.health.probing.Load())
	}
	a.report(outcomeFailed, pickedNow(a, true), 0, &r.Health, quiet, "test") // the probe fails
	if a.health.healthy() || a.health.cooldown != 100*time.Millisecond || a.health.probing.Load() {
		t.Fatalf("after the probe failed: healthy %v, cool-down %v, probing %v; want ejected for 100ms, no probe", a.health.healthy(), a.health.cooldown, a.health.probing.Load())
	}
}

// TestRetryKeepsEjectedTargetsCoolDown: a retry never goes to an ejected
// target: its cool-down (its Retry-After) is kept whether another target is
// available (tried already) or none is; a request still gets its first
// attempt when every target is ejected. The retry used to go there once
// every available target was tried, and with none available each request
// went to every ejected target in turn.
func TestRetryKeepsEjectedTargetsCoolDown(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	a, b := r.pool.targets[0], r.pool.targets[1]
	var h fasthttp.ResponseHeader
	h.Set("Retry-After", "120")
	a.report(outcomeFailed, pickedNow(a, false), retryAfter(&h), &r.Health, quiet, "status 429")
	if n := r.pool.left(b.bit); n != 0 {
		t.Fatalf("after b failed, %d targets left for a retry; want 0 (a is cooling down, b available)", n)
	}
	if n := r.pool.left(0); n != 1 {
		t.Fatalf("%d targets left before any attempt, want 1 (b)", n)
	}
	b.report(outcomeFailed, pickedNow(b, false), retryAfter(&h), &r.Health, quiet, "status 429")
	if n := r.pool.left(a.bit); n != 0 {
		t.Fatalf("every target ejected, a tried: %d left, want 0 (b is cooling down too)", n)
	}
	if tg, _ := r.pool.pick(0); tg == nil {
		t.Fatal("every target ejected: no target picked for a request's first attempt, want one")
	}
}

// TestRetryAfterHuge: a Retry-After past what a Duration holds ejects (for
// max_cooldown) instead of wrapping negative and reading as none.
func TestRetryAfterHuge(t *testing.T) {
	var h fasthttp.ResponseHeader
	h.Set("Retry-After", "9999999999")
	if d := retryAfter(&h); d < time.Hour {
		t.Fatalf("Retry-After 9999999999: %v", d)
	}
}

// pickedNow is how an attempt picked t now would be: its probe or not.
func pickedNow(t *target, probe bool) picked {
	return picked{probe: probe, epoch: t.health.epoch.Load()}
}

// TestEjectionNotShortened: a 429's Retry-After ejection stands against the
// failures of requests picked before it (they may lengthen it, never
// shorten it) and against their successes; the success of a request
// picked after it began (while every target was ejected) ends it.
func TestEjectionNotShortened(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	a := r.pool.targets[0]
	ho := &HealthOptions{MaxFails: 1, Cooldown: 10 * time.Second, MaxCooldown: time.Hour}
	before := pickedNow(a, false) // in flight when the 429 comes
	a.report(outcomeFailed, pickedNow(a, false), 30*time.Minute, ho, quiet, "status 429")
	left := func() time.Duration { return time.Duration(a.health.until.Load() - mono.Now()) }
	if l := left(); l < 29*time.Minute {
		t.Fatalf("ejected for %v after Retry-After: 1800", l)
	}
	a.report(outcomeFailed, before, 0, ho, quiet, "upstream_reset")
	if l := left(); l < 29*time.Minute {
		t.Fatalf("a failure of a request in flight cut the Retry-After ejection to %v", l)
	}
	a.report(outcomeOK, before, 0, ho, quiet, "")
	if a.health.healthy() {
		t.Fatal("the success of a request picked before the ejection ended it")
	}
	a.report(outcomeOK, pickedNow(a, false), 0, ho, quiet, "")
	if !a.health.healthy() {
		t.Fatal("the success of a request picked while ejected did not end the ejection")
	}
}

// TestProbeOvertakenByRetryAfter: a probe out when a request in flight gets
// a 429 with Retry-After (the ejection made longer) does not end that
// ejection by its success, and lets the next probe through once it is over.
func TestProbeOvertakenByRetryAfter(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	a := r.pool.targets[0]
	ho := &HealthOptions{MaxFails: 1, Cooldown: 10 * time.Second, MaxCooldown: time.Hour}
	a.report(outcomeFailed, pickedNow(a, false), 0, ho, quiet, "status 503")
	a.health.until.Store(mono.Now() - 1) // the cool-down is over
	if !a.health.claim(mono.Now()) {
		t.Fatal("no probe let through after the cool-down")
	}
	probe := pickedNow(a, true)
	a.report(outcomeFailed, pickedNow(a, false), 30*time.Minute, ho, quiet, "status 429") // one in flight
	a.report(outcomeOK, probe, 0, ho, quiet, "")
	if a.health.healthy() {
		t.Fatal("the probe's success ended the Retry-After ejection that came after it was picked")
	}
	if a.health.probing.Load() {
		t.Fatal("the overtaken probe still blocks the next one")
	}
}

// TestFlappingTargetLogsSpacedOut: a target ejected and back again and
// again (a provider failing every other request, max_fails 1) logs one line
// of each kind per healthLogEvery, not one every other request; the
// ejections are all counted.
func TestFlappingTargetLogsSpacedOut(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	a := r.pool.targets[0]
	ho := &HealthOptions{MaxFails: 1, Cooldown: 10 * time.Second, MaxCooldown: time.Minute}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	for range 20 {
		a.report(outcomeFailed, pickedNow(a, false), 0, ho, log, "status 500")
		a.report(outcomeOK, pickedNow(a, false), 0, ho, log, "")
	}
	if n := a.health.ejections.Load(); n != 20 {
		t.Fatalf("%d ejections counted, want 20", n)
	}
	out := buf.String()
	if e, b := strings.Count(out, "upstream target ejected"), strings.Count(out, "upstream target healthy again"); e != 1 || b != 1 {
		t.Fatalf("%d ejection and %d return lines for 20 of each within %v, want 1 and 1:\n%s", e, b, healthLogEvery, out)
	}
}

// TestOvertakenProbeLeavesNewerProbe: a probe whose ejection was made
// longer meanwhile (a failure, a 429 of a request in flight) says nothing
// of the probe let through after that longer ejection, whether it
// succeeds late or its client leaves: one probe at a time.
func TestOvertakenProbeLeavesNewerProbe(t *testing.T) {
	for _, late := range []outcome{outcomeOK, outcomeNeutral} {
		r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
		a := r.pool.targets[0]
		ho := &HealthOptions{MaxFails: 1, Cooldown: 10 * time.Second, MaxCooldown: time.Hour}
		a.report(outcomeFailed, pickedNow(a, false), 0, ho, quiet, "status 503")
		a.health.until.Store(mono.Now() - 1)
		if !a.health.claim(mono.Now()) {
			t.Fatal("no first probe")
		}
		first := pickedNow(a, true)
		a.report(outcomeFailed, pickedNow(a, false), time.Minute, ho, quiet, "status 429") // one in flight: longer
		a.health.until.Store(mono.Now() - 1)
		if !a.health.claim(mono.Now()) {
			t.Fatal("no second probe after the longer ejection")
		}
		a.report(late, first, 0, ho, quiet, "")
		if !a.health.probing.Load() || a.health.claim(mono.Now()) {
			t.Fatalf("the first probe's late outcome %d ended the second probe's claim", late)
		}
	}
}

// TestLastHealthLineTellsLastingState: after spaced-out lines, an ejection
// that lasts (a 429 with Retry-After of an hour) is logged, whatever came
// just before: the last line never says "healthy again" of a target that
// stays ejected, nor "ejected" of one back for good.
func TestLastHealthLineTellsLastingState(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	a := r.pool.targets[0]
	ho := &HealthOptions{MaxFails: 1, Cooldown: 5 * time.Second, MaxCooldown: 2 * time.Hour}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	last := func() string {
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		return lines[len(lines)-1]
	}
	a.report(outcomeFailed, pickedNow(a, false), 0, ho, log, "status 500")
	a.report(outcomeOK, pickedNow(a, false), 0, ho, log, "")
	a.report(outcomeFailed, pickedNow(a, false), 0, ho, log, "status 500") // short: not logged
	a.report(outcomeOK, pickedNow(a, false), 0, ho, log, "")               // its return: not logged either
	if !strings.Contains(last(), "healthy again") {
		t.Fatalf("last line %q, want the target healthy", last())
	}
	a.report(outcomeFailed, pickedNow(a, false), time.Hour, ho, log, "status 429")
	if !strings.Contains(last(), "upstream target ejected") || a.health.healthy() {
		t.Fatalf("ejected for an hour, last line %q", last())
	}
}

// TestFailedProbeKeepsEjectionLogged: a logged ejection whose probe
// fails is ejected again (not logged: short, within healthLogEvery); the
// target's return after that is logged, so that its last line does not
// say "ejected" of a target back for good.
func TestFailedProbeKeepsEjectionLogged(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	a := r.pool.targets[0]
	ho := &HealthOptions{MaxFails: 1, Cooldown: 3 * time.Second, MaxCooldown: 20 * time.Second}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	a.report(outcomeFailed, pickedNow(a, false), 0, ho, log, "status 500") // logged
	a.health.until.Store(mono.Now() - 1)                                   // the cool-down is over
	if !a.health.claim(mono.Now()) {
		t.Fatal("no probe let through after the cool-down")
	}
	a.report(outcomeFailed, pickedNow(a, true), 0, ho, log, "status 500") // the probe fails: 6 s more, not logged
	a.health.until.Store(mono.Now() - 1)
	if !a.health.claim(mono.Now()) {
		t.Fatal("no second probe")
	}
	a.report(outcomeOK, pickedNow(a, true), 0, ho, log, "")
	out := strings.TrimSpace(buf.String())
	if lines := strings.Split(out, "\n"); !a.health.healthy() || !strings.Contains(lines[len(lines)-1], "healthy again") {
		t.Fatalf("target back after a failed probe; log:\n%s", out)
	}
}

// TestProbingTargetBeforeCoolingOne: with one target past its cool-down
// and its probe out, and the other still in a Retry-After, a request goes
// to the first, not round-robin to the one that asked for a pause, and a
// retry after the paused one may go there too.
func TestProbingTargetBeforeCoolingOne(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	a, b := r.pool.targets[0], r.pool.targets[1]
	var long, short fasthttp.ResponseHeader
	long.Set("Retry-After", "120")
	short.Set("Retry-After", "1")
	b.report(outcomeFailed, pickedNow(b, false), retryAfter(&long), &r.Health, quiet, "status 429")
	a.report(outcomeFailed, pickedNow(a, false), retryAfter(&short), &r.Health, quiet, "status 429")
	deadline := time.Now().Add(10 * time.Second)
	for !a.health.cooled(mono.Now()) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if tg, probe := r.pool.pick(0); tg != a || !probe {
		t.Fatalf("past a's cool-down: picked %v (probe %v), want a's probe", tg.label, probe)
	}
	for i := range 4 {
		if tg, probe := r.pool.pick(0); tg != a || probe {
			t.Fatalf("pick %d while a's probe is out and b is paused: %s (probe %v), want a, no second probe", i, tg.label, probe)
		}
	}
	if n := r.pool.left(b.bit); n != 1 {
		t.Fatalf("after b failed: %d targets left, want 1 (a, past its cool-down)", n)
	}
}

// TestRetrySkipsProbingTarget: with a target available, a retry does not
// go to one whose probe is out ("one probe request is let through, others
// skip the target meanwhile").
func TestRetrySkipsProbingTarget(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	a, b := r.pool.targets[0], r.pool.targets[1]
	var short fasthttp.ResponseHeader
	short.Set("Retry-After", "1")
	b.report(outcomeFailed, pickedNow(b, false), retryAfter(&short), &r.Health, quiet, "status 429")
	deadline := time.Now().Add(10 * time.Second)
	for !b.health.cooled(mono.Now()) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !b.health.claim(mono.Now()) {
		t.Fatal("b's probe not claimed")
	}
	if n := r.pool.left(a.bit); n != 0 {
		t.Fatalf("a available and failed, b's probe out: %d targets left for a retry, want 0", n)
	}
}
