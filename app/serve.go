package app

import (
	"net"
	"sync"
)

// servedListeners are the listeners Serve was given, so that Shutdown
// closes them itself: fasthttp's Shutdown closes only the listeners its
// Serve registered, and a Shutdown that ran before Serve got that far
// (a relay started and stopped at once) left Serve accepting forever.
type servedListeners struct {
	mu     sync.Mutex
	closed bool // Shutdown began: Serve serves no more listeners
	lns    []*onceListener
}

// add registers ln for Serve and returns it wrapped, or closes it and
// returns nil when Shutdown already began.
func (s *servedListeners) add(ln net.Listener) *onceListener {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = ln.Close()
		return nil
	}
	ol := &onceListener{Listener: ln}
	s.lns = append(s.lns, ol)
	return ol
}

// close closes every listener Serve was given and makes later Serve calls
// return at once. A Serve blocked in Accept then returns nil (fasthttp
// takes a closed listener's error for the end of serving).
func (s *servedListeners) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, ln := range s.lns {
		_ = ln.Close()
	}
}

// onceListener is a listener closed once: the next Close calls return nil,
// so that fasthttp's Shutdown, closing it again, reports no error.
type onceListener struct {
	net.Listener
	once sync.Once
}

// Close closes the listener the first time, and does nothing after.
func (l *onceListener) Close() error {
	err := error(nil)
	l.once.Do(func() { err = l.Listener.Close() })
	return err
}
