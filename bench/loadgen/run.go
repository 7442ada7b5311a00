package main

import (
	"errors"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stream-relay/stream-relay/bench/procstat"
)

// load is the shared state of one run.
type load struct {
	o       *Options
	req     []byte
	addr    string
	measure int64 // mono(): start of the measured window
	end     int64 // mono(): end of the window; no request starts after it
	giveUp  int64 // mono(): in-flight requests are abandoned after this

	ttfb, first, gap, total, lag Histogram

	started, ok, inWindow, bytes atomic.Int64
	open, peakOpen               atomic.Int64
	unsent                       atomic.Int64

	mu     sync.Mutex
	errs   map[string]int64
	conns  map[*conn]struct{}
	tokens chan int64 // open loop: intended send times
}

func run(args []string) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	procs, err := procstat.ParseWatch(o.Watch)
	if err != nil {
		return err
	}
	procs = append(procs, procstat.Group{Name: "loadgen", PIDs: []int{os.Getpid()}})
	u, _ := url.Parse(o.URL)
	l := &load{o: o, req: buildRequest(o), addr: u.Host, errs: map[string]int64{}, conns: map[*conn]struct{}{}}

	s := newSampler(procs, &l.open)
	t0 := mono()
	l.measure = t0 + int64(o.Warmup)
	l.end = l.measure + int64(o.Duration)
	l.giveUp = l.end + int64(o.Grace)
	s.start(o.Sample)

	if o.Rate > 0 {
		n := min(int(o.Rate*(o.Warmup+o.Duration).Seconds())+1, 1<<22)
		l.tokens = make(chan int64, n)
		go l.pace(t0)
	}
	var wg sync.WaitGroup
	for i := range o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if o.Ramp > 0 {
				time.Sleep(time.Duration(int64(o.Ramp) * int64(i) / int64(o.Conns)))
			}
			l.worker()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// The window ends at its deadline or when every worker is done (with
	// -per-conn), whichever is first; CPU is read at both ends of it.
	waitUntil(l.measure, done)
	s.mark(0)
	waitUntil(l.end, done)
	wEnd := min(mono(), l.end)
	s.mark(1)
	waitUntil(l.giveUp, done)
	l.closeAll() // unblocks reads still waiting past the grace period
	<-done
	s.stop()

	res := l.result(s, time.Duration(wEnd-l.measure))
	res.print(os.Stdout)
	if o.JSON != "" {
		return res.writeJSON(o.JSON)
	}
	return nil
}

// waitUntil sleeps until mono() reaches at or done closes.
func waitUntil(at int64, done <-chan struct{}) {
	d := time.Duration(at - mono())
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
}

// pace issues intended send times at the rate until the window ends. It
// never blocks on the workers: the channel holds every token of the run. It
// wakes for each due token; the runtime rounds sub-millisecond sleeps up, so
// tokens go out in small bursts, each stamped with its own intended time.
func (l *load) pace(t0 int64) {
	defer close(l.tokens)
	interval := float64(time.Second) / l.o.Rate
	for i := int64(0); ; i++ {
		at := t0 + int64(float64(i)*interval)
		if at >= l.end {
			return
		}
		if d := at - mono(); d > 0 {
			time.Sleep(time.Duration(d))
		}
		select {
		case l.tokens <- at:
		default:
			l.unsent.Add(1)
		}
	}
}

func (l *load) worker() {
	var c *conn
	defer func() {
		if c != nil {
			l.drop(c)
		}
	}()
	for n := 0; l.o.PerConn == 0 || n < l.o.PerConn; n++ {
		var start int64
		if l.tokens != nil {
			at, ok := <-l.tokens
			if !ok {
				return
			}
			if mono() > l.giveUp {
				l.unsent.Add(1)
				continue
			}
			start = at
		} else {
			start = mono()
			if start >= l.end {
				return
			}
		}
		if c == nil {
			var err error
			if c, err = l.dial(); err != nil {
				l.fail(start, "dial")
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}
		sent := mono()
		l.open.Add(1)
		if o := l.open.Load(); o > l.peakOpen.Load() {
			l.peakOpen.Store(o) // racy max; close enough for a gauge
		}
		tm, err := c.roundTrip(l.req, start, l.o.Timeout)
		l.open.Add(-1)
		l.done(start, sent, tm, c.gaps, err)
		if err != nil || !c.keepOpen {
			l.drop(c)
			c = nil
		}
	}
}

func (l *load) dial() (*conn, error) {
	nc, err := net.DialTimeout("tcp", l.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c := newConn(nc, l.o.BufBytes, l.o.Mode == "sse")
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	return c, nil
}

func (l *load) drop(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	_ = c.c.Close()
}

func (l *load) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.c.Close()
	}
}

// measured reports whether a request that started at start is in the window.
func (l *load) measured(start int64) bool { return start >= l.measure && start < l.end }

func (l *load) fail(start int64, kind string) {
	if !l.measured(start) {
		return
	}
	l.mu.Lock()
	l.errs[kind]++
	l.mu.Unlock()
}

func (l *load) done(start, sent int64, tm timing, gaps []int64, err error) {
	now := mono()
	if !l.measured(start) {
		return
	}
	l.started.Add(1)
	switch {
	case err != nil:
		l.fail(start, errKind(err))
		return
	case tm.status != 200:
		l.fail(start, "status_"+strconv.Itoa(tm.status))
		return
	}
	l.ok.Add(1)
	if now <= l.end {
		l.inWindow.Add(1)
	}
	l.bytes.Add(tm.bytes)
	l.ttfb.Record(time.Duration(tm.ttfb))
	if tm.firstEvent >= 0 {
		l.first.Record(time.Duration(tm.firstEvent))
	}
	l.total.Record(time.Duration(tm.total))
	for _, g := range gaps {
		l.gap.Record(time.Duration(g))
	}
	if l.tokens != nil {
		l.lag.Record(time.Duration(sent - start))
	}
}

func errKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, errTruncated):
		return "truncated"
	case errors.Is(err, errMalformed):
		return "malformed"
	case errors.As(err, &ne):
		if oe, ok := ne.(*net.OpError); ok {
			return oe.Op
		}
		return "net"
	default:
		return "read"
	}
}
