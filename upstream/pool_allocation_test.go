//go:build !race

package upstream

import "testing"

// TestPickAllocatesNothing: choosing a target (weighted round-robin, health
// checks, the probe claim) allocates nothing.
func TestPickAllocatesNothing(t *testing.T) {
	r := poolRoute(t, Target{Name: "a", Weight: 3}, Target{Name: "b"}, Target{Name: "c", Backup: true})
	if n := testing.AllocsPerRun(1000, func() {
		t := pickOne(r.pool, 0)
		t.report(outcomeOK, pickedNow(t, false), 0, &r.Health, quiet, "")
		_ = pickOne(r.pool, t.bit)
	}); n != 0 {
		t.Errorf("%v allocations per pick, want 0", n)
	}
	tries := []attempt{{label: "a", errType: "upstream_connect"}, {label: "b", status: 200}}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(1000, func() {
		buf = appendAttempts(append(buf[:0], "{}"...), tries, false)
	}); n != 0 {
		t.Errorf("%v allocations per appendAttempts, want 0", n)
	}
}
