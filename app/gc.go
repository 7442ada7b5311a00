package app

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
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
// is the process's. processGOGC says GOGC was in the process's environment
// at start, where the runtime read it; one that only the env file set
// (LoadEnvFile, after the runtime started) is applied here, as the runtime
// would have.
func SetGCPercent(cfg *Config, processGOGC bool) (percent int, fromEnv bool) {
	if v := os.Getenv("GOGC"); v != "" {
		if !processGOGC {
			if n, ok := parseGOGC(v); ok {
				debug.SetGCPercent(n)
			}
		}
		p := debug.SetGCPercent(100) // read it back: SetGCPercent returns the old value
		debug.SetGCPercent(p)
		return p, true
	}
	debug.SetGCPercent(cfg.Server.GCPercent)
	if cfg.Server.GCFloorBytes > 0 {
		startGCFloor(cfg.Server.GCPercent, cfg.Server.GCFloorBytes)
	}
	return cfg.Server.GCPercent, false
}

// gcFloor keeps the heap's growth between two collections at or above
// floor bytes while the live heap grows: after each collection that found
// more live (by an eighth) than the one before, it sets the GC percent to
// the larger of the configured one and what floor is of the live heap;
// after the others, back to the configured one. With a small live heap,
// the configured percent alone lets the heap grow a few MB between
// collections. While a surge of new streams grows the relay's pools, that
// meant a collection running most of the time and new requests paying for
// it in GC assists before their first byte. A steady heap keeps the
// configured percent, and so most of its memory per stream: what the
// surge's extra garbage leaves in RSS stays. Measured (relay built without
// -race; RSS 20 s in, minus idle): collections while 4,000 streams
// opened in 4 s, and RSS per stream with 2,000 streams of one event a
// second open, for no floor, 8 MiB (the default) and 16 MiB: 28, 11 and 5
// collections; 24.2, 25.3 and 26.5 KiB.
type gcFloor struct {
	percent int   // the configured percent
	floor   int64 // the least growth between collections, bytes
	prev    int64 // the live heap after the collection before, bytes
	live    []metrics.Sample

	current atomic.Int64 // the percent set last
	runs    atomic.Int64 // collections seen (tests)
	stopped atomic.Bool
}

// startGCFloor runs the floor until stop.
func startGCFloor(percent int, floor int64) *gcFloor {
	g := &gcFloor{percent: percent, floor: floor, live: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	g.current.Store(int64(percent))
	g.arm()
	return g
}

// stop ends the floor after the next collection; the percent stays as set.
func (g *gcFloor) stop() { g.stopped.Store(true) }

// arm has collected run after the next collection: a cleanup runs once its
// object is found unreachable, which a fresh object is at the next
// collection.
func (g *gcFloor) arm() {
	runtime.AddCleanup(new(gcSentinel), func(g *gcFloor) { g.collected() }, g)
}

// gcSentinel is large enough not to share the tiny allocator's blocks,
// whose other objects could keep it reachable.
type gcSentinel struct{ _ [2]uint64 }

func (g *gcFloor) collected() {
	if g.stopped.Load() {
		return
	}
	metrics.Read(g.live)
	if live := int64(g.live[0].Value.Uint64()); live > 0 {
		if p := g.next(live); int64(p) != g.current.Load() {
			debug.SetGCPercent(p)
			g.current.Store(int64(p))
		}
	}
	g.runs.Add(1)
	g.arm()
}

// next returns the GC percent to set after a collection that left live
// bytes live.
func (g *gcFloor) next(live int64) int {
	grew := live > g.prev+g.prev/8
	g.prev = live
	if !grew {
		return g.percent
	}
	// Go's least heap goal, 4 MiB at 100 percent, grows with the percent:
	// it is kept at floor, so that a tiny live heap gets no goal many times
	// floor.
	need := (g.floor*100 + live - 1) / live
	most := g.floor * 100 / (4 << 20)
	return int(max(int64(g.percent), min(need, most)))
}

// parseGOGC reads a GOGC value as the runtime does: a percent, or "off"
// (-1). ok is false for anything else (the runtime then keeps 100).
func parseGOGC(v string) (int, bool) {
	if v == "off" {
		return -1, true
	}
	n, err := strconv.Atoi(v)
	return n, err == nil
}
