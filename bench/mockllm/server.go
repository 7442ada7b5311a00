package mockllm

import (
	"context"
	"crypto/subtle"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Serve on a server that was already closed.
var ErrClosed = errors.New("mockllm: server closed")

// Server is the mock upstream. It is an http.Handler; Serve or Listen puts
// it on a socket.
type Server struct {
	o   Options
	err error // from validating Options, returned by Serve
	hs  *http.Server
	log requestLog

	open   atomic.Int64
	closed atomic.Int64

	// mu orders wg.Add against Close's wg.Wait: once stopping is set no
	// handler or Serve may join wg.
	mu       sync.Mutex
	stopping bool
	wg       sync.WaitGroup
	done     chan struct{} // closed by Close: ends delays and stalls
	doneOnce sync.Once

	serveErr atomic.Pointer[error] // from the Serve that Listen started
}

var _ http.Handler = (*Server)(nil)

// New returns a Server for o. Invalid Options are reported by Serve and
// Listen.
func New(o Options) *Server {
	o.setDefaults()
	s := &Server{o: o, err: o.validate(), done: make(chan struct{})}
	s.hs = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		// Clients that go away mid-stream are the point of this server; its
		// complaints about them are noise in test output.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	return s
}

// Listen listens on addr ("127.0.0.1:0" when empty), serves in the
// background and returns the server and its base URL, such as
// "http://127.0.0.1:41234". The caller must Close the server.
func Listen(addr string, o Options) (*Server, string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	s := New(o)
	if s.err != nil {
		return nil, "", s.err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	if !s.join() {
		panic("BUG: mockllm: new server already stopping")
	}
	go func() {
		defer s.wg.Done()
		if err := s.serve(ln); err != nil {
			s.serveErr.Store(&err)
		}
	}()
	return s, "http://" + ln.Addr().String(), nil
}

// Serve accepts connections on ln until Close or Shutdown, after which it
// returns nil.
func (s *Server) Serve(ln net.Listener) error {
	if s.err != nil {
		_ = ln.Close()
		return s.err
	}
	if !s.join() {
		_ = ln.Close()
		return ErrClosed
	}
	defer s.wg.Done()
	return s.serve(ln)
}

func (s *Server) serve(ln net.Listener) error {
	err := s.hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// join adds one to wg unless the server is stopping.
func (s *Server) join() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.wg.Add(1)
	return true
}

// Shutdown stops accepting and waits, up to ctx, for responses in progress
// to finish. Stalled streams do not finish on their own: call Close when
// Shutdown returns an error.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.hs.Shutdown(ctx)
}

// Close drops every connection, ends delays and stalls, and waits for the
// handlers and the Serve started by Listen to return.
func (s *Server) Close() error {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.doneOnce.Do(func() { close(s.done) })
	err := s.hs.Close()
	s.wg.Wait()
	if p := s.serveErr.Load(); p != nil && err == nil {
		err = *p
	}
	return err
}

// ServeHTTP routes a request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.join() {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusServiceUnavailable, errTypeMock, "server closing")
		return
	}
	defer s.wg.Done()

	switch r.URL.Path {
	case "/healthz":
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, "ok")
			return
		}
	case "/mock/requests":
		if r.Method == http.MethodGet {
			s.serveRequests(w)
			return
		}
	}

	body, err := io.ReadAll(io.LimitReader(r.Body, s.o.MaxBodyBytes+1))
	tooLarge := int64(len(body)) > s.o.MaxBodyBytes
	if tooLarge {
		body = body[:s.o.MaxBodyBytes]
	}
	s.log.add(r, body)
	if err != nil {
		writeError(w, http.StatusBadRequest, errTypeInvalid, "reading body: "+err.Error())
		return
	}

	var api endpoint
	if r.Method == http.MethodPost {
		switch r.URL.Path {
		case "/v1/chat/completions":
			api = chatEndpoint
		case "/v1/messages":
			api = messagesEndpoint
		case "/v1/responses":
			api = responsesEndpoint // responses.go
		case "/v1/audio/speech":
			api = speechEndpoint
		}
	}
	if api == nil {
		writeError(w, http.StatusNotFound, errTypeNotFound, "no route for "+r.Method+" "+r.URL.Path)
		return
	}
	if !s.authorized(r.Header) {
		writeError(w, http.StatusUnauthorized, errTypeAuth, "missing or wrong API key")
		return
	}
	if tooLarge {
		w.Header().Set("Connection", "close")
		writeError(w, http.StatusRequestEntityTooLarge, errTypeTooLarge, "body exceeds max_body_bytes")
		return
	}
	ctl, err := parseControl(r.Header)
	if err != nil {
		writeError(w, http.StatusBadRequest, errTypeInvalid, err.Error())
		return
	}
	var req apiRequest
	if len(body) > 0 {
		if err := parseRequest(body, &req); err != nil {
			writeError(w, http.StatusBadRequest, errTypeInvalid, "body: "+err.Error())
			return
		}
	}
	req.promptTokens = max(len(body)/4, 1)

	s.open.Add(1)
	defer s.open.Add(-1)
	st := newStream(s, w, r, &ctl)
	if !st.wait(ctl.firstByte) {
		st.abort(false)
		return
	}
	if ctl.status != 0 {
		writeMockStatus(w, ctl.status)
		return
	}
	api(st, &req)
}

// authorized reports whether h carries Options.RequireKey, if one is set.
func (s *Server) authorized(h http.Header) bool {
	if s.o.RequireKey == "" {
		return true
	}
	key := h.Get("X-Api-Key")
	if key == "" {
		auth := h.Get("Authorization")
		if len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			key = auth[7:]
		}
	}
	return key != "" && subtle.ConstantTimeCompare([]byte(key), []byte(s.o.RequireKey)) == 1
}

// apiRequest holds the request fields the mock looks at, for all endpoints.
type apiRequest struct {
	Model         string `json:"model"`
	Stream        bool   `json:"stream"`
	StreamOptions struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	ResponseFormat string `json:"response_format"`

	promptTokens int
}

func (r *apiRequest) model() string {
	if r.Model == "" {
		return "mock-model"
	}
	return r.Model
}

// endpoint answers one API request once the common checks passed.
type endpoint func(st *stream, req *apiRequest)
