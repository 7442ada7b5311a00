// Package ratelog spaces out log lines of an error that may repeat many
// times a second (a failing disk, a process out of descriptors): one line
// per interval, saying how many it stood for.
package ratelog

import (
	"sync/atomic"
	"time"

	"github.com/stream-relay/stream-relay/internal/mono"
)

// Every lets one line through per interval; the zero value is ready to
// use, and lets the first line through.
type Every struct {
	last       atomic.Int64 // mono.Now of the last line; 0: none yet
	suppressed atomic.Int64 // occurrences since the last line
}

// Allow reports whether this occurrence gets a line, the last one having
// been at least interval ago, and, when it does, how many were suppressed
// since the last one.
func (e *Every) Allow(interval time.Duration) (ok bool, suppressed int64) {
	now, last := mono.Now(), e.last.Load()
	if last != 0 && now-last < int64(interval) || !e.last.CompareAndSwap(last, now) {
		e.suppressed.Add(1)
		return false, 0
	}
	return true, e.suppressed.Swap(0)
}
