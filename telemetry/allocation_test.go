//go:build !race

package telemetry

import (
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

func TestStartWriteAllocateNothing(t *testing.T) {
	m := New([]string{"openai", "anthropic", "tts"})
	recs := []*record.Record{
		finished("tts", 200, "", 40*time.Millisecond),
		finished("openai", 502, record.ErrUpstreamConnect, record.None),
		finished("", 404, record.ErrNotFound, record.None),
	}
	for _, r := range recs {
		m.Write(r) // registers each status code once
	}
	for _, r := range recs {
		if n := testing.AllocsPerRun(1000, func() { m.Start(r); m.Write(r) }); n != 0 {
			t.Errorf("route %q: %v allocations per request, want 0", r.Route, n)
		}
	}
}
