package quota

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// deadlineSlices is how many contexts one Timeout is cut into: a shared
// context is handed out for Timeout/deadlineSlices after its creation, so
// every Redis call gets between (1-1/deadlineSlices)×Timeout and Timeout.
const deadlineSlices = 10

// deadlines bounds Redis calls by Options.Timeout without a context per
// call: context.WithTimeout costs several heap allocations and a timer, as
// much as the rest of a decision. Calls that start within one slice of the
// timeout share one context whose deadline is at most Timeout away.
type deadlines struct {
	timeout time.Duration
	slice   time.Duration
	cur     atomic.Pointer[sharedDeadline]
	mu      sync.Mutex // serializes the creation of the next context
}

// sharedDeadline is one shared context, handed out until next.
type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc
	next   time.Time
}

func (d *deadlines) init(timeout time.Duration) {
	d.timeout = timeout
	d.slice = max(timeout/deadlineSlices, time.Microsecond)
}

// bound returns a context for one Redis call that ends at most Timeout from
// now, and a cancel to call when the call returns. A parent that can be
// cancelled gets a context of its own; the background context of the relay's
// handlers shares one.
func (d *deadlines) bound(parent context.Context) (context.Context, context.CancelFunc) {
	if parent.Done() != nil {
		return context.WithTimeout(parent, d.timeout)
	}
	now := time.Now()
	if s := d.cur.Load(); s != nil && now.Before(s.next) {
		return s.ctx, noCancel
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if s := d.cur.Load(); s != nil && now.Before(s.next) {
		return s.ctx, noCancel
	}
	// The context cancels itself at its deadline; the previous one is still
	// in use by calls in flight and ends the same way.
	ctx, cancel := context.WithDeadline(context.Background(), now.Add(d.timeout))
	d.cur.Store(&sharedDeadline{ctx: ctx, cancel: cancel, next: now.Add(d.slice)})
	return ctx, noCancel
}

// stop releases the current shared context's timer.
func (d *deadlines) stop() {
	if s := d.cur.Swap(nil); s != nil {
		s.cancel()
	}
}

func noCancel() {}
