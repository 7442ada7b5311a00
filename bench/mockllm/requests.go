package mockllm

import (
	"bytes"
	"net/http"
	"sync"
	"sync/atomic"
)

// RingSize is how many of the latest requests a Server keeps.
const RingSize = 64

// Request is one request as the server received it.
type Request struct {
	// Seq is the 1-based order of arrival among recorded requests.
	Seq    int64       `json:"seq"`
	Method string      `json:"method"`
	Path   string      `json:"path"` // with the query, as sent
	Host   string      `json:"host"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"-"`
}

func (r *Request) clone() Request {
	c := *r
	c.Header = r.Header.Clone()
	c.Body = bytes.Clone(r.Body)
	return c
}

// requestLog keeps the last RingSize requests. A mutex, not a lock-free ring,
// because Requests must see whole entries and recording is once per request.
type requestLog struct {
	mu    sync.Mutex
	ring  [RingSize]Request
	count atomic.Int64
}

func (l *requestLog) add(r *http.Request, body []byte) {
	l.mu.Lock()
	seq := l.count.Add(1)
	l.ring[(seq-1)%RingSize] = Request{
		Seq:    seq,
		Method: r.Method,
		Path:   r.RequestURI,
		Host:   r.Host,
		// net/http builds a fresh Header for every request and the handler
		// never changes it, so the ring keeps it; snapshot copies it.
		Header: r.Header,
		Body:   body,
	}
	l.mu.Unlock()
}

// snapshot returns copies of the kept requests, oldest first.
func (l *requestLog) snapshot() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.count.Load()
	first := max(n-RingSize, 0)
	out := make([]Request, 0, n-first)
	for seq := first + 1; seq <= n; seq++ {
		out = append(out, l.ring[(seq-1)%RingSize].clone())
	}
	return out
}

// Requests returns copies of the last RingSize requests received, oldest
// first. /healthz and /mock/requests are not recorded.
func (s *Server) Requests() []Request { return s.log.snapshot() }

// Count returns how many requests were recorded since the server started.
func (s *Server) Count() int64 { return s.log.count.Load() }

// Open returns how many API responses are in progress, including stalled
// streams and those waiting out a first-byte delay.
func (s *Server) Open() int64 { return s.open.Load() }

// Closed returns how many API responses ended because the client went away
// (a failed write or the request context ending), so relay tests can assert
// that the relay dropped its upstream connection.
func (s *Server) Closed() int64 { return s.closed.Load() }

// requestsView is the JSON form of GET /mock/requests; bodies are strings
// because they are JSON text in practice.
type requestsView struct {
	Count    int64             `json:"count"`
	Open     int64             `json:"open"`
	Closed   int64             `json:"closed"`
	Requests []requestBodyView `json:"requests"`
}

type requestBodyView struct {
	Request
	Body string `json:"body"`
}

func (s *Server) serveRequests(w http.ResponseWriter) {
	reqs := s.Requests()
	v := requestsView{
		Count:    s.Count(),
		Open:     s.Open(),
		Closed:   s.Closed(),
		Requests: make([]requestBodyView, len(reqs)),
	}
	for i := range reqs {
		v.Requests[i] = requestBodyView{Request: reqs[i], Body: string(reqs[i].Body)}
	}
	writeJSON(w, http.StatusOK, v)
}
