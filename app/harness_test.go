package app

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/record"
)

// row is what the tests keep of a finished record.
type row struct {
	ID, Route, Tenant, KeyID, Method, Path, ErrorType, Model string
	Status                                                   int
	TTFB, TTFT, Duration                                     time.Duration
	BytesIn, BytesOut                                        int64
	ChunkCount                                               int
	TokensIn, TokensOut                                      int64
	ReqHeaders, RespHeaders, ReqBody                         string
	Chunks                                                   []string
	ChunkTimes                                               []uint32
	Truncated                                                bool
	Start                                                    time.Time
}

// rows is a sink that keeps copies of finished records.
type rows struct {
	mu   sync.Mutex
	rows []row
	ch   chan struct{}
}

func newRows() *rows { return &rows{ch: make(chan struct{}, 1024)} }

func (s *rows) Write(r *record.Record) error {
	c := row{
		ID: r.IDString(), Route: r.Route, Tenant: r.Tenant, KeyID: r.KeyID, Method: r.Method, Path: r.Path,
		ErrorType: r.ErrorType, Model: r.Model, Status: r.Status, TTFB: r.TTFB, TTFT: r.TTFT, Duration: r.Duration,
		BytesIn: r.BytesIn, BytesOut: r.BytesOut, ChunkCount: r.ChunkCount, TokensIn: r.TokensIn, TokensOut: r.TokensOut,
		ReqHeaders: string(r.RequestHeaders), RespHeaders: string(r.ResponseHeaders), ReqBody: string(r.RequestBody),
		ChunkTimes: append([]uint32(nil), r.Chunks.AtMS...), Truncated: r.Truncated, Start: r.Start,
	}
	for i := 0; i < r.Chunks.Len(); i++ {
		c.Chunks = append(c.Chunks, string(r.Chunks.Chunk(i)))
	}
	s.mu.Lock()
	s.rows = append(s.rows, c)
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
	return nil
}

// wait returns the row with the given request id, waiting up to 5s for it.
func (s *rows) wait(t *testing.T, id string) row {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		s.mu.Lock()
		for _, r := range s.rows {
			if r.ID == id {
				s.mu.Unlock()
				return r
			}
		}
		s.mu.Unlock()
		select {
		case <-s.ch:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no record for request %s", id)
		}
	}
}

const (
	relayKey    = "sk-relay-test-key-123"
	providerKey = "sk-provider-secret-456"
)

// testConfig is a relay config in front of a mock upstream at base.
func testConfig(base, spool string, extra string) string {
	return `
server:
  host: 127.0.0.1
  port: 8080
  shutdown_grace: 5s
  max_body_bytes: 65536
  detach_above: 0 # every stream detached, as under load (TestDetachAbove: the default)
auth:
  keys:
    - key: ` + relayKey + `
      tenant: test-tenant
      tenants: [other]
    - key: sk-relay-second
      tenant: second
routes:
  - name: openai
    path: /v1/chat/completions
    upstream: ` + base + `
    auth_env: TEST_PROVIDER_KEY
    kind: sse
    idle_timeout: 2s
    first_byte_timeout: 2s
  - name: anthropic
    path: /v1/messages
    upstream: ` + base + `
    auth_env: TEST_PROVIDER_KEY
    auth_header: x-api-key
    headers: {anthropic-version: "2023-06-01"}
    kind: sse
  - name: tts
    path: /v1/audio/speech
    upstream: ` + base + `
    auth_env: TEST_PROVIDER_KEY
    kind: raw
  - name: nokey
    path: /nokey/*
    upstream: ` + base + `
    auth_env: TEST_UNSET_PROVIDER_KEY
  - name: refused
    path: /refused
    upstream: http://127.0.0.1:1
    auth_env: TEST_PROVIDER_KEY
storage:
  spool_dir: ` + spool + `
rate_limit:
  disabled: true
log:
  level: error
` + extra
}

// relay is a running relay in front of a mock upstream.
type relay struct {
	app  *App
	base string
	mock *mockllm.Server
	rows *rows
	done chan error
}

func startRelay(t *testing.T, extra string) *relay {
	t.Helper()
	return startRelayWith(t, extra, nil)
}

// startRelayWith is startRelay with a change to the parsed config.
func startRelayWith(t *testing.T, extra string, mutate func(*Config)) *relay {
	t.Helper()
	return startRelayYAML(t, func(yaml string) string { return yaml + extra }, mutate)
}

// startRelayYAML starts a mock upstream and a relay in front of it from
// testConfig, changed first as YAML (edit) and then as parsed (mutate).
func startRelayYAML(t *testing.T, edit func(string) string, mutate func(*Config)) *relay {
	t.Helper()
	mock, mockBase, err := mockllm.Listen("127.0.0.1:0", mockllm.Options{RequireKey: providerKey, StallTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	os.Unsetenv("TEST_UNSET_PROVIDER_KEY")
	cfg, err := Parse([]byte(edit(testConfig(mockBase, t.TempDir(), ""))))
	if err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	return startApp(t, cfg, mock)
}

func startApp(t *testing.T, cfg *Config, mock *mockllm.Server) *relay {
	t.Helper()
	sink := newRows()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := New(cfg, log, sink)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{app: a, base: "http://" + ln.Addr().String(), mock: mock, rows: sink, done: make(chan error, 1)}
	go func() { r.done <- a.Serve(ln) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *relay) stop(t *testing.T) { r.stopAllowing(t, "") }

// stopAllowing is stop for a test whose relay may lose rows at exit: an
// error of Shutdown that contains allowed (when set) is no failure.
func (r *relay) stopAllowing(t *testing.T, allowed string) {
	if r.app == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := r.app.Shutdown(ctx); err != nil && (allowed == "" || !strings.Contains(err.Error(), allowed)) {
		t.Errorf("shutdown: %v", err)
	}
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Error("Serve did not return after Shutdown")
	}
	r.app = nil
}

// post sends a request to the relay with the relay key and returns the response.
func (r *relay) post(t *testing.T, path, body string, hdr map[string]string) *http.Response {
	t.Helper()
	resp, err := r.tryPost(path, body, hdr)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// tryPost is post that returns the client's error.
func (r *relay) tryPost(path, body string, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, r.base+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+relayKey)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	return testClient.Do(req)
}

// relayTo starts an upstream serving h and a relay with a route named name
// on path prefix (prefix/*) to it, its key from TEST_PROVIDER_KEY, the
// rest of the configuration the harness's; routeExtra is more YAML for
// the route (indented four spaces), mutate changes the Config (or nil).
func relayTo(t *testing.T, name, prefix, routeExtra string, h http.HandlerFunc, mutate func(*Config)) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	return startRelayYAML(t, func(yaml string) string {
		return strings.Replace(yaml, "routes:\n", `routes:
  - name: `+name+`
    path: `+prefix+`/*
    upstream: http://`+ln.Addr().String()+`
    auth_env: TEST_PROVIDER_KEY
`+routeExtra, 1)
	}, mutate)
}

// request sends method path to the relay with the relay key (body, when
// not empty, as JSON) and returns the response, its body read.
func (r *relay) request(t *testing.T, method, path, body string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, r.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+relayKey)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, readAll(t, resp)
}

// servedRow is request wanting status 200; it returns the request's row.
func (r *relay) servedRow(t *testing.T, method, path, body string) row {
	t.Helper()
	resp, got := r.request(t, method, path, body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: status %d %.200s", method, path, resp.StatusCode, got)
	}
	return r.rows.wait(t, resp.Header.Get("X-Request-Id"))
}

var testClient = &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}

// readAll reads and closes a response body.
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

// sseEvents splits an SSE body into its data payloads.
func sseEvents(body string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

// nextEvent reads one SSE event (up to a blank line) from br.
func nextEvent(br *bufio.Reader) (string, error) {
	var buf bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		buf.WriteString(line)
		if err != nil {
			return buf.String(), err
		}
		if line == "\n" || line == "\r\n" {
			return buf.String(), nil
		}
	}
}
