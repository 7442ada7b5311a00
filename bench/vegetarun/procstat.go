package main

import "github.com/stream-relay/stream-relay/bench/procstat"

// readTicks reads every group; a group that cannot be read is left out.
func readTicks(ps []procstat.Group) map[string]int64 {
	m := make(map[string]int64, len(ps))
	for _, p := range ps {
		if t, err := p.Read(false); err == nil {
			m[p.Name] = t.Ticks
		}
	}
	return m
}
