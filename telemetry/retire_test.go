package telemetry

import (
	"strings"
	"testing"
	"time"
)

// routeSeries counts the scraped series with route label name.
func routeSeries(got map[string]float64, name string) int {
	n := 0
	for s := range got {
		if strings.Contains(s, `{route="`+name+`"`) {
			n++
		}
	}
	return n
}

func TestKeepRoutesDropsRemovedRoutesOnceIdle(t *testing.T) {
	m := New([]string{"old", "stays"})
	clock := time.Unix(1_800_000_000, 0)
	m.now, m.born = func() time.Time { return clock }, clock
	teapot := finished("old", 418, "", time.Millisecond) // a status registered on first use
	m.Start(teapot)
	m.Write(teapot)
	open := finished("old", 200, "", time.Millisecond)
	m.Start(open)
	if n := routeSeries(scrape(t, m), "old"); n < 50 {
		t.Fatalf("route old has %d series before the reload, want its whole set", n)
	}

	m.AddRoutes([]string{"new", "stays"})
	m.KeepRoutes([]string{"new", "stays"})
	if n := routeSeries(scrape(t, m), "old"); n < 50 {
		t.Fatalf("route old has %d series right after the reload, want them kept for %v", n, retireAfter)
	}
	clock = clock.Add(retireAfter)
	if n := routeSeries(scrape(t, m), "old"); n < 50 {
		t.Fatalf("route old has %d series with a stream still open on it, want them kept", n)
	}
	m.Write(open) // the last stream ends: it counts on old, not unmatched
	got := scrape(t, m)
	if got[`relay_requests_total{route="unmatched",status="200"}`] != 0 {
		t.Fatal("the stream open across the reload counted as unmatched")
	}
	if n := routeSeries(got, "old"); n != 0 {
		t.Fatalf("route old still has %d series when idle %v after its removal, want none", n, retireAfter)
	}
	for _, name := range []string{"stays", "new", "unmatched"} {
		if n := routeSeries(got, name); n < 50 {
			t.Fatalf("route %s has %d series, want its whole set", name, n)
		}
	}
	if got[`relay_active_connections{route="unmatched"}`] != 0 {
		t.Fatalf("unmatched active = %v, want 0", got[`relay_active_connections{route="unmatched"}`])
	}

	// A route removed and then configured again before it went serves on.
	m.KeepRoutes([]string{"new"})
	clock = clock.Add(retireAfter / 2)
	m.AddRoutes([]string{"new", "stays"})
	m.KeepRoutes([]string{"new", "stays"})
	clock = clock.Add(2 * retireAfter)
	m.Write(finished("stays", 200, "", time.Millisecond))
	got = scrape(t, m)
	if got[`relay_requests_total{route="stays",status="200"}`] != 1 {
		t.Fatalf("route stays, configured again, lost its series: %d left", routeSeries(got, "stays"))
	}

	// Removed and due, then configured again by a reload: a scrape between
	// its AddRoutes and its KeepRoutes leaves the series.
	m.AddRoutes([]string{"again"})
	m.KeepRoutes([]string{"new"})
	clock = clock.Add(2 * retireAfter)
	m.AddRoutes([]string{"new", "again"})
	if n := routeSeries(scrape(t, m), "again"); n < 50 {
		t.Fatalf("route again, configured again, lost its series to a scrape before KeepRoutes: %d left", n)
	}
	m.KeepRoutes([]string{"new", "again"})
	clock = clock.Add(2 * retireAfter)
	if n := routeSeries(scrape(t, m), "again"); n < 50 {
		t.Fatalf("route again lost its series: %d left", n)
	}
}
