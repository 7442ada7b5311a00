package app

import (
	"os"
	"runtime/debug"
)

// Once warm, the relay allocates next to nothing per request or chunk
// (the hot paths are checked by the Alloc tests), so how often Go collects
// garbage hardly moves its CPU; what a lower GC target buys is memory. At
// Go's default of 100 the heap grows to twice what was live before a
// collection, and with thousands of open streams that slack is a good part
// of each stream's RSS. Measured with 2,000 open streams of one event a
// second (relay built without -race, RSS at the plateau minus idle, per
// stream, two runs each): GOGC 100: 29.4 KiB; 50: 26.2-26.8 KiB; 25:
// 23.6-24.5 KiB; the relay's CPU per request was the same within noise, and
// so was its throughput at 64 connections with 20-chunk streams (three
// alternating rounds each way).

// SetGCPercent applies server.gc_percent to the Go runtime unless the GOGC
// environment variable is set, and returns the percent in effect and
// whether it came from GOGC. Only the relay's main calls it: the setting
// is the process's.
func SetGCPercent(cfg *Config) (percent int, fromEnv bool) {
	if os.Getenv("GOGC") != "" {
		p := debug.SetGCPercent(100) // read it back: SetGCPercent returns the old value
		debug.SetGCPercent(p)
		return p, true
	}
	debug.SetGCPercent(cfg.Server.GCPercent)
	return cfg.Server.GCPercent, false
}
