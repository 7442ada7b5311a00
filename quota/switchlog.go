package quota

import (
	"log/slog"
	"sync"
	"time"
)

// A busy host can make Redis miss a decision's deadline now and then
// (Options.Timeout, 50 ms by default) while Redis itself is fine: the
// limiter switches to its fallback and back at the next probe. Each such
// blip used to log a warning and an info line; the chaos soak, on two
// cores shared with ClickHouse and the load generator, logged about twenty
// pairs in eight minutes, and a real outage drowned among them. Every
// switch is still counted (relay_ratelimit_switches_total); the log keeps
// the first switch of a run as a warning and puts the blips that follow
// within Options.SwitchLogQuiet of that warning at debug level. A muted
// switch whose outage outlasts a probe is no blip: the probe's failure
// logs the warning then, and the switch back is logged as usual. The next
// warning after the quiet time says how many switches were muted since the
// last one.

// switchLog decides the level of the limiter's switch lines.
type switchLog struct {
	mu    sync.Mutex
	quiet time.Duration
	last  time.Time // the last warning; zero: none yet
	muted int       // switches to the fallback logged at debug since last
	// mutedNow: the outage in progress was not warned about (nor will its
	// end be logged at info) unless it outlasts a probe.
	mutedNow bool
}

// toFallback returns the level of a switch to the fallback at now and the
// switches muted since the last warning (to report with a warning).
func (s *switchLog) toFallback(now time.Time) (slog.Level, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.last.IsZero() && now.Sub(s.last) < s.quiet {
		s.muted++
		s.mutedNow = true
		return slog.LevelDebug, 0
	}
	n := s.muted
	s.last, s.muted, s.mutedNow = now, 0, false
	return slog.LevelWarn, n
}

// stillDown reports whether a failed probe at now must warn: the outage
// in progress was muted. It then counts as warned.
func (s *switchLog) stillDown(now time.Time) (warn bool, muted int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.mutedNow {
		return false, 0
	}
	n := s.muted - 1 // this outage is warned about now
	s.last, s.muted, s.mutedNow = now, 0, false
	return true, n
}

// toRedis returns the level of the switch back to Redis.
func (s *switchLog) toRedis() slog.Level {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mutedNow {
		s.mutedNow = false
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// takeOver continues prev's log state (Adopt): a reload does not reset
// the quiet time.
func (s *switchLog) takeOver(prev *switchLog) {
	prev.mu.Lock()
	last, muted, now := prev.last, prev.muted, prev.mutedNow
	prev.mu.Unlock()
	s.mu.Lock()
	s.last, s.muted, s.mutedNow = last, muted, now
	s.mu.Unlock()
}
