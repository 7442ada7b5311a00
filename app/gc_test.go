package app

import (
	"runtime/debug"
	"testing"
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
	if p, fromEnv := SetGCPercent(cfg); p != 40 || fromEnv {
		t.Fatalf("SetGCPercent = %d, %v; want 40 from the config", p, fromEnv)
	}
	if got := debug.SetGCPercent(40); got != 40 {
		t.Fatalf("runtime GC percent %d after SetGCPercent, want 40", got)
	}

	debug.SetGCPercent(70) // as the runtime would have from GOGC=70 at start
	t.Setenv("GOGC", "70")
	if p, fromEnv := SetGCPercent(cfg); p != 70 || !fromEnv {
		t.Fatalf("SetGCPercent with GOGC=70 = %d, %v; want 70 from the environment", p, fromEnv)
	}
	if got := debug.SetGCPercent(70); got != 70 {
		t.Fatalf("runtime GC percent %d with GOGC set, want it left at 70", got)
	}
}
