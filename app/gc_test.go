package app

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

// TestSetGCPercent: server.gc_percent becomes the runtime's GC target; a
// GOGC in the environment wins and the target is left as the runtime set
// it.
func TestSetGCPercent(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)

	t.Setenv("GOGC", "")
	cfg := &Config{}
	cfg.Server.GCPercent = 40
	if p, fromEnv := SetGCPercent(cfg, false); p != 40 || fromEnv {
		t.Fatalf("SetGCPercent = %d, %v; want 40 from the config", p, fromEnv)
	}
	if got := debug.SetGCPercent(40); got != 40 {
		t.Fatalf("runtime GC percent %d after SetGCPercent, want 40", got)
	}

	debug.SetGCPercent(70) // as the runtime would have from GOGC=70 at start
	t.Setenv("GOGC", "70")
	if p, fromEnv := SetGCPercent(cfg, true); p != 70 || !fromEnv {
		t.Fatalf("SetGCPercent with GOGC=70 = %d, %v; want 70 from the environment", p, fromEnv)
	}
	if got := debug.SetGCPercent(70); got != 70 {
		t.Fatalf("runtime GC percent %d with GOGC set, want it left at 70", got)
	}
	// GOGC set by the env file only (after the runtime read the process's
	// environment): applied here, as the runtime would have; it was taken
	// for applied, and neither it nor gc_percent was.
	debug.SetGCPercent(100)
	t.Setenv("GOGC", "55")
	if p, fromEnv := SetGCPercent(cfg, false); p != 55 || !fromEnv {
		t.Fatalf("SetGCPercent with GOGC=55 from the env file = %d, %v; want 55", p, fromEnv)
	}
}

// TestGCFloorPercent: while the live heap grows, the percent gives the heap
// at least the floor's growth, with Go's least goal (4 MiB at 100) held to
// the floor; a heap that stopped growing gets the configured percent back,
// and so does one large enough for it alone.
func TestGCFloorPercent(t *testing.T) {
	const mib = 1 << 20
	g := &gcFloor{percent: 25, floor: 16 * mib}
	for _, c := range []struct {
		live int64
		want int
	}{
		{1 * mib, 400},    // growing from nothing: 1,600 % capped at 400 (a 16 MiB least goal)
		{8 * mib, 200},    // growing: 16 MiB is 200 % of 8 MiB
		{8.5 * mib, 25},   // within an eighth: steady
		{40 * mib, 40},    // growing: 16 MiB is 40 %
		{44 * mib, 25},    // steady
		{50 * mib, 32},    // growing: 32 %, rounded up
		{100 * mib, 25},   // growing, but 25 % of it is more than the floor
		{60 * mib, 25},    // shrinking
		{600 * mib, 25},   // growing, large
		{0.5 * mib, 25},   // shrinking
		{0.75 * mib, 400}, // growing again
	} {
		if got := g.next(c.live); got != c.want {
			t.Errorf("live %.2f MiB: percent %d, want %d", float64(c.live)/mib, got, c.want)
		}
	}
}

// TestGCFloorFollowsCollections: the floor runs after each of the
// runtime's collections and sets the runtime's GC percent: raised after
// the first (the live heap grew from nothing), back to the configured one
// once the heap is steady.
func TestGCFloorFollowsCollections(t *testing.T) {
	// Collections off until the floor sets a percent: no collection of the
	// runtime's own may run next to the test's first. runtime.GC waits for
	// a cycle in progress and then runs one more, so one started by the
	// runtime (at 25 % of a small heap, often) would take the floor's
	// sentinel and, once the floor re-armed it, the next one too: the floor
	// would see a steady heap before the test looked.
	orig := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(orig)
	g := startGCFloor(25, 1<<30)
	defer g.stop()
	collect := func(after int64) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); g.runs.Load() <= after; time.Sleep(time.Millisecond) {
			runtime.GC()
			if time.Now().After(deadline) {
				t.Fatalf("the floor saw %d collections after 30 s, want more than %d", g.runs.Load(), after)
			}
		}
	}
	collect(0)
	// Go's least goal held to the floor: 1 GiB is 25,600 % of 4 MiB.
	if p := g.current.Load(); p <= 25 || p > 25_600 {
		t.Fatalf("after the first collection the percent is %d, want raised above 25", p)
	}
	if got := debug.SetGCPercent(int(g.current.Load())); int64(got) != g.current.Load() {
		t.Fatalf("runtime GC percent %d, the floor set %d", got, g.current.Load())
	}
	for i := 0; g.current.Load() != 25; i++ {
		if i == 20 {
			t.Fatalf("the percent stayed %d over 20 collections of a steady heap, want 25", g.current.Load())
		}
		collect(g.runs.Load())
	}
	if got := debug.SetGCPercent(25); got != 25 {
		t.Fatalf("runtime GC percent %d once the heap is steady, want 25", got)
	}
}
