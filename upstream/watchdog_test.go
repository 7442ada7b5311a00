package upstream

import (
	"sync"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// quietStream is a stream past its response headers whose upstream last
// read is now, on a route with the given idle timeout, and no client to
// watch; tracked in w.
func quietStream(w *Watchdog, idle time.Duration) *Stream {
	rec := record.Acquire(1 << 10)
	rec.TTFB = 1
	s := &Stream{route: &Route{}, rec: rec, start: time.Now()}
	s.route.IdleTimeout = idle
	s.lastRead.Store(int64(time.Since(s.start)))
	w.track(s)
	return s
}

// TestWatchdogChecksOnlyStreamsDue: a tick checks a stream only once its
// next deadline may have come. Streams an hour from their idle timeout
// are checked once (when tracked), not at every tick; a stream whose
// upstream keeps reading is not cut while it does, and is cut as
// upstream_timeout once it falls silent for its idle timeout.
func TestWatchdogChecksOnlyStreamsDue(t *testing.T) {
	w := NewWatchdog(WatchdogOptions{Tick: 5 * time.Millisecond})
	defer w.Stop()
	const n = 100
	streams := make([]*Stream, n)
	for i := range streams {
		streams[i] = quietStream(w, time.Hour)
	}
	waitFor(t, w, "every stream checked once", func() bool { return w.checks >= n })
	time.Sleep(40 * w.tick)
	w.mu.Lock()
	checks := w.checks
	w.mu.Unlock()
	if checks != n {
		t.Errorf("%d checks of %d streams not due for an hour over 40 ticks, want %d", checks, n, n)
	}
	// Streams that end leave from anywhere; the others keep their entries.
	for i := 0; i < n; i += 2 {
		w.untrack(streams[i])
	}
	w.mu.Lock()
	for i, e := range w.watched {
		if e.s.wdIndex != i || !e.s.wdTracked {
			t.Errorf("entry %d holds a stream that says %d (tracked %v)", i, e.s.wdIndex, e.s.wdTracked)
		}
	}
	w.mu.Unlock()
	if got := w.Len(); got != n/2 {
		t.Fatalf("%d streams watched after %d of %d ended", got, n/2, n)
	}
	for i := 1; i < n; i += 2 {
		if !streams[i].wdTracked || streams[i-1].wdTracked {
			t.Fatalf("stream %d: tracked %v; stream %d: tracked %v", i, streams[i].wdTracked, i-1, streams[i-1].wdTracked)
		}
	}

	s := quietStream(w, 2*time.Second)
	stop := make(chan struct{})
	var reading sync.WaitGroup
	reading.Add(1)
	go func() { // an upstream read every 50 ms for 3 s
		defer reading.Done()
		for range 60 {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			s.lastRead.Store(int64(time.Since(s.start)))
		}
	}()
	reading.Wait()
	close(stop)
	if r := reasonOf(s); r != "" {
		t.Fatalf("a stream read every 50 ms was cut (%s) with a 2 s idle timeout", r)
	}
	waitFor(t, w, "the silent stream cut", func() bool { return reasonOf(s) != "" })
	if r := reasonOf(s); r != record.ErrUpstreamTimeout {
		t.Errorf("cut as %q, want %q", r, record.ErrUpstreamTimeout)
	}
	if d := time.Since(s.start) - time.Duration(s.lastRead.Load()); d < 2*time.Second {
		t.Errorf("cut %v after its last read, before its 2 s idle timeout", d)
	}
}

// waitFor polls cond under the watchdog's mutex for up to 20 s.
func waitFor(t *testing.T, w *Watchdog, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: not %s", what)
		}
	}
}

func reasonOf(s *Stream) string {
	if r := s.reason.Load(); r != nil {
		return *r
	}
	return ""
}
