package app

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// poolRow is what the pool tests keep of a record.
type poolRow struct {
	Route, Upstream, ErrorType, RespHeaders string
	Status                                  int
	TTFB, TTFT                              time.Duration
	TokensOut                               int64
	Chunks                                  string // the captured response bytes
	ClientIP, Model                         string
}

// poolRows is a sink keeping poolRows.
type poolRows struct {
	mu   sync.Mutex
	rows []poolRow
}

func (s *poolRows) Write(r *record.Record) error {
	s.mu.Lock()
	s.rows = append(s.rows, poolRow{Route: r.Route, Upstream: r.Upstream, ErrorType: r.ErrorType,
		RespHeaders: string(r.ResponseHeaders), Status: r.Status, TTFB: r.TTFB, TTFT: r.TTFT, TokensOut: r.TokensOut, Chunks: string(r.Chunks.Data), ClientIP: r.ClientIP, Model: r.Model})
	s.mu.Unlock()
	return nil
}

func (s *poolRows) all() []poolRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]poolRow(nil), s.rows...)
}

// poolRelay is a relay started from YAML (routes and more), with its sink.
type poolRelay struct {
	*relay
	sink *poolRows
}

// poolConfig is a relay config with the given routes section (list items
// indented by two spaces) and extra top-level YAML.
func poolConfig(t *testing.T, routes, extra string) string {
	return `
server:
  host: 127.0.0.1
  shutdown_grace: 5s
auth:
  keys:
    - key: ` + relayKey + `
      tenant: test-tenant
routes:
` + routes + `
storage:
  spool_dir: ` + t.TempDir() + `
log:
  level: error
` + extra
}

func startPool(t *testing.T, yaml string) *poolRelay {
	t.Helper()
	return startPoolLog(t, yaml, io.Discard)
}

// startPoolLog is startPool with the relay's log written to log.
func startPoolLog(t *testing.T, yaml string, log io.Writer) *poolRelay {
	t.Helper()
	return startPoolOn(t, yaml, log, func(ln net.Listener) net.Listener { return ln })
}

// startPoolOn is startPoolLog serving on wrap's listener around a loopback one.
func startPoolOn(t *testing.T, yaml string, log io.Writer, wrap func(net.Listener) net.Listener) *poolRelay {
	t.Helper()
	cfg, err := Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	sink := &poolRows{}
	a, err := New(cfg, slog.New(slog.NewTextHandler(log, nil)), sink)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{app: a, base: "http://" + ln.Addr().String(), done: make(chan error, 1)}
	go func() { r.done <- a.Serve(wrap(ln)) }()
	t.Cleanup(func() { r.stop(t) })
	return &poolRelay{relay: r, sink: sink}
}

// chatPool starts a relay with one route, chat, at /v1/chat/completions
// to the upstream at up, with the route options in extra (YAML lines
// indented by four spaces) and no rate limits.
func chatPool(t *testing.T, up, extra string) *poolRelay {
	t.Helper()
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	return startPool(t, poolConfig(t, `
  - name: chat
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstream: `+up+`
`+extra, "rate_limit: {disabled: true}"))
}

// mock starts a mock LLM requiring key; it is closed when the test ends.
func mock(t *testing.T, key string) (*mockllm.Server, string) {
	t.Helper()
	m, base, err := mockllm.Listen("127.0.0.1:0", mockllm.Options{RequireKey: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, base
}

// deadURL is an address nobody listens on: connections are refused.
func deadURL(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("http://127.0.0.1:%d", servicetest.FreePort(t))
}

const chatBody = `{"model":"gpt-4o-mini","stream":false,"messages":[{"role":"user","content":"hi"}]}`

// send posts n chat requests with c workers and returns the status counts
// (0: a transport error).
func (p *poolRelay) send(t *testing.T, path string, n, c int, hdr map[string]string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	got := map[int]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				code := p.try(path, hdr)
				mu.Lock()
				got[code]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return got
}

// try sends one request and reads the whole answer; 0 on a transport error
// or a body cut short.
func (p *poolRelay) try(path string, hdr map[string]string) int {
	req, _ := http.NewRequest(http.MethodPost, p.base+path, strings.NewReader(chatBody))
	req.Header.Set("Authorization", "Bearer "+relayKey)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0
	}
	return resp.StatusCode
}

// metric returns the scrape line starting with name (series and labels).
func (p *poolRelay) metric(name string) string {
	var b bytes.Buffer
	p.app.metrics.WritePrometheus(&b)
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.HasPrefix(l, name+" ") {
			return l
		}
	}
	return ""
}

func TestPoolWeightsSplitRequests(t *testing.T) {
	_, a := mock(t, "key-a")
	_, b := mock(t, "key-b")
	t.Setenv("POOL_KEY_A", "key-a")
	t.Setenv("POOL_KEY_B", "key-b")
	p := startPool(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    upstreams:
      - {name: a, url: "`+a+`", auth_env: POOL_KEY_A, weight: 3}
      - {name: b, url: "`+b+`", auth_env: POOL_KEY_B, weight: 1}
`, "rate_limit: {disabled: true}"))
	got := p.send(t, "/v1/chat/completions", 1000, 8, nil)
	if got[200] != 1000 {
		t.Fatalf("statuses %v, want 1000 × 200", got)
	}
	served := map[string]int{}
	for _, r := range p.sink.all() {
		served[r.Upstream]++
	}
	na, nb := served[a+"#a"], served[b+"#b"]
	t.Logf("served: a %d, b %d", na, nb)
	if na < 700 || na > 800 || nb < 200 || nb > 300 || na+nb != 1000 {
		t.Fatalf("served %v: want a 750±50 and b 250±50 (each target with its own key)", served)
	}
}

func TestPoolRefusingTargetNoClientErrors(t *testing.T) {
	_, live := mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	dead := deadURL(t)
	p := startPool(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstreams:
      - {name: dead, url: "`+dead+`"}
      - {name: live, url: "`+live+`"}
`, "rate_limit: {disabled: true}"))
	got := p.send(t, "/v1/chat/completions", 200, 4, nil)
	if got[200] != 200 {
		t.Fatalf("statuses %v, want 200 × 200", got)
	}
	failovers := 0
	for _, r := range p.sink.all() {
		if r.Upstream != live+"#live" || r.Status != 200 || r.ErrorType != "" {
			t.Fatalf("row %+v: want served by live", r)
		}
		if strings.Contains(r.RespHeaders, `"x-relay-attempts":"dead=upstream_connect live=200"`) {
			failovers++
		}
	}
	// max_fails 3: the dead target is tried (and failed over from) three
	// times, then ejected for 10 s, longer than the test; requests of the
	// other workers may have picked it before the third failure came back.
	if failovers < 3 || failovers > 3+3 {
		t.Errorf("%d requests failed over, want 3 (up to 6 with 4 workers), then the target is ejected", failovers)
	}
	if m := p.metric(`relay_upstream_healthy{route="pool",target="dead"}`); !strings.HasSuffix(m, " 0") {
		t.Errorf("healthy gauge of dead: %q", m)
	}
	if m := p.metric(`relay_upstream_ejections_total{route="pool",target="dead"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("ejections of dead: %q", m)
	}
	if m := p.metric(`relay_upstream_healthy{route="pool",target="live"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("healthy gauge of live: %q", m)
	}
}

func TestPoolBackupServesWhilePrimariesDown(t *testing.T) {
	_, backup := mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    failover: {max_attempts: 3}
    upstreams:
      - {url: "`+deadURL(t)+`"}
      - {url: "`+deadURL(t)+`"}
      - {name: spare, url: "`+backup+`", backup: true}
`, "rate_limit: {disabled: true}"))
	got := p.send(t, "/v1/chat/completions", 50, 2, nil)
	if got[200] != 50 {
		t.Fatalf("statuses %v, want 50 × 200 from the backup", got)
	}
	for _, r := range p.sink.all() {
		if r.Upstream != backup+"#spare" {
			t.Fatalf("row %+v: want served by the backup", r)
		}
	}
}

// tooManyServer answers every request 429 with Retry-After: seconds and
// counts the requests.
func tooManyServer(t *testing.T, seconds int) (string, *atomic.Int64) {
	t.Helper()
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Retry-After", fmt.Sprint(seconds))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":{"type":"rate_limit","message":"slow down"}}`)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String(), &hits
}

func TestPool429RetryAfterSkipsTarget(t *testing.T) {
	_, live := mock(t, providerKey)
	limited, hits := tooManyServer(t, 2)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    failover: {on: [connect, timeout, 429, 5xx]}
    upstreams:
      - {name: limited, url: "`+limited+`", weight: 5}
      - {name: live, url: "`+live+`"}
`, "rate_limit: {disabled: true}"))
	start := time.Now()
	got := p.send(t, "/v1/chat/completions", 100, 2, nil)
	first := hits.Load()
	// Both workers may have picked it before its first 429 came back.
	if time.Since(start) < 1500*time.Millisecond && (first < 1 || first > 2) {
		t.Fatalf("the 429 target got %d requests within its Retry-After of 2 s, want 1 (2 with 2 workers)", first)
	}
	if got[200] != 100 {
		t.Fatalf("statuses %v, want 100 × 200: no client sees the 429", got)
	}
	time.Sleep(time.Until(start.Add(2200 * time.Millisecond)))
	got = p.send(t, "/v1/chat/completions", 20, 1, nil)
	if got[200] != 20 {
		t.Fatalf("statuses after the Retry-After %v, want 20 × 200", got)
	}
	if n := hits.Load(); n != first+1 {
		t.Fatalf("the 429 target got %d requests after Retry-After, want 1 probe", n-first)
	}
	failedOver := 0
	for _, r := range p.sink.all() {
		if strings.Contains(r.RespHeaders, `"x-relay-attempts":"limited=429 live=200"`) {
			failedOver++
		}
	}
	if failedOver != int(first+1) {
		t.Errorf("%d rows list the attempts limited=429 live=200, want %d", failedOver, first+1)
	}
}

func TestPoolFailover5xxAndExhausted(t *testing.T) {
	_, live := mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstreams:
      - {name: a, url: "`+live+`"}
      - {name: b, url: "`+live+`"}
  - name: dead
    path: /dead
    auth_env: TEST_PROVIDER_KEY
    upstreams:
      - {name: x, url: "`+deadURL(t)+`"}
      - {name: y, url: "`+deadURL(t)+`"}
`, "rate_limit: {disabled: true}"))
	// Both targets answer 503 (the mock's X-Mock-Status): the second answer
	// is relayed, the row lists both attempts.
	if code := p.try("/v1/chat/completions", map[string]string{mockllm.HeaderStatus: "503"}); code != 503 {
		t.Fatalf("status %d, want the last target's 503", code)
	}
	if code := p.try("/dead", nil); code != 502 {
		t.Fatalf("status %d, want 502 with every target refusing", code)
	}
	rows := p.sink.all()
	if len(rows) != 2 {
		t.Fatalf("%d rows", len(rows))
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Route > rows[j].Route })
	if r := rows[0]; r.ErrorType != record.ErrUpstreamStatus || !strings.Contains(r.RespHeaders, `"x-relay-attempts":"a=503 b=503"`) && !strings.Contains(r.RespHeaders, `"x-relay-attempts":"b=503 a=503"`) {
		t.Errorf("5xx row %+v", r)
	}
	if r := rows[1]; r.ErrorType != record.ErrUpstreamConnect || r.RespHeaders != `{"x-relay-attempts":"x=upstream_connect y=upstream_connect"}` {
		t.Errorf("exhausted row %+v", r)
	}
}

// TestPoolFailoverLatency measures what a failover adds: requests whose
// first target refuses the connection against requests sent straight to a
// live target (logged; asserted only loosely).
func TestPoolFailoverLatency(t *testing.T) {
	_, live := mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	direct := startPool(t, poolConfig(t, `
  - name: direct
    path: /v1/chat/completions
    upstream: "`+live+`"
    auth_env: TEST_PROVIDER_KEY
`, "rate_limit: {disabled: true}"))
	p := startPool(t, poolConfig(t, `
  - name: failover
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    health: {max_fails: 1000000}
    upstreams:
      - {name: dead, url: "`+deadURL(t)+`", weight: 1000000}
      - {name: live, url: "`+live+`"}
`, "rate_limit: {disabled: true}"))
	const n = 400
	measure := func(p *poolRelay) (p50, p99 time.Duration) {
		var ds []time.Duration
		for range n {
			s := time.Now()
			if code := p.try("/v1/chat/completions", nil); code != 200 {
				t.Fatalf("status %d", code)
			}
			ds = append(ds, time.Since(s))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[n/2], ds[n*99/100]
	}
	measure(direct) // warm both relays' connections
	measure(p)
	d50, d99 := measure(direct)
	f50, f99 := measure(p)
	failed := 0
	for _, r := range p.sink.all() {
		if r.Route == "failover" && strings.Contains(r.RespHeaders, "dead=upstream_connect") {
			failed++
		}
	}
	t.Logf("client round trip, %d requests each: direct p50 %v p99 %v; first target refusing p50 %v p99 %v; added p50 %v p99 %v",
		n, d50, d99, f50, f99, f50-d50, f99-d99)
	if failed < 2*n-5 {
		t.Fatalf("%d of %d failover requests tried the dead target first", failed, 2*n)
	}
}

func TestPoolConfigErrorsNameTheField(t *testing.T) {
	route := func(body string) string {
		return "auth: {keys: [{key: k, tenant: t}]}\nroutes:\n  - name: r\n    path: /p\n" + body
	}
	tests := []struct{ name, body, field string }{
		{"both forms", "    upstream: http://a\n    upstreams: [{url: http://b}]\n", "routes[0].upstream="},
		{"bad url", "    upstreams: [{url: http://a}, {url: x}]\n", "routes[0].upstreams[1].url"},
		{"negative weight", "    upstreams: [{url: http://a, weight: -1}]\n", "routes[0].upstreams[0].weight"},
		{"duplicate name", "    upstreams: [{url: http://a, name: x}, {url: http://b, name: x}]\n", "routes[0].upstreams[1].name"},
		{"index clash", "    upstreams: [{url: http://a}, {url: http://b, name: \"0\"}]\n", "routes[0].upstreams[1].name"},
		{"only backups", "    upstreams: [{url: http://a, backup: true}]\n", "routes[0].upstreams="},
		{"failover on", "    upstream: http://a\n    failover: {on: [connect, 404]}\n", "routes[0].failover.on[1]"},
		{"max attempts", "    upstream: http://a\n    failover: {max_attempts: 9}\n", "routes[0].failover.max_attempts"},
		{"max fails", "    upstream: http://a\n    health: {max_fails: -1}\n", "routes[0].health.max_fails"},
		{"cooldown", "    upstream: http://a\n    health: {cooldown: -1s}\n", "routes[0].health.cooldown"},
	}
	for _, tt := range tests {
		_, err := Parse([]byte(route(tt.body)))
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: %v, want an error naming %s", tt.name, err, tt.field)
		}
	}
	if _, err := Parse([]byte(route("    upstreams: [{url: http://a, weight: 2}, {url: http://b, backup: true}]\n    failover: {on: [429], max_attempts: 3}\n"))); err != nil {
		t.Errorf("valid pool: %v", err)
	}
}

// silentServer accepts connections and reads what comes, but never answers:
// an upstream that hangs before its first byte. It returns its URL and how
// many connections it accepted.
func silentServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var conns sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			conns.Add(1)
			go func() {
				defer conns.Done()
				_, _ = io.Copy(io.Discard, c) // until the relay gives up and closes
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		conns.Wait()
	})
	return "http://" + ln.Addr().String(), &accepted
}

// TestPoolFailoverOnFirstByteTimeout: a target that never answers is given
// up at the route's first-byte timeout, and the next target gets a whole
// first-byte timeout of its own: the requests that tried the silent target
// first still succeed, and a route with only that target answers 504 after
// about the timeout.
func TestPoolFailoverOnFirstByteTimeout(t *testing.T) {
	_, live := mock(t, providerKey)
	silent, accepted := silentServer(t)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    first_byte_timeout: 1s
    failover: {on: [timeout]}
    upstreams:
      - {name: silent, url: "`+silent+`"}
      - {name: live, url: "`+live+`", weight: 2}
  - name: hang
    path: /hang
    auth_env: TEST_PROVIDER_KEY
    first_byte_timeout: 1s
    upstreams:
      - {name: silent, url: "`+silent+`"}
`, "rate_limit: {disabled: true}"))
	// A first attempt cut at 1 s leaves the second one no time if the
	// timeout counted from the request: the live target takes 500 ms to its
	// first byte, which only a fresh timeout of its own allows.
	slow := map[string]string{mockllm.HeaderFirstByteDelay: "500"}
	for i := range 6 {
		if code := p.try("/v1/chat/completions", slow); code != 200 {
			t.Fatalf("request %d: status %d, want 200 (failed over from the silent target)", i, code)
		}
	}
	start := time.Now()
	if code := p.try("/hang", nil); code != 504 {
		t.Fatalf("/hang: status %d, want 504", code)
	}
	// A loaded machine may answer well past the timeout.
	if d := time.Since(start); d < time.Second || d > 20*time.Second {
		t.Errorf("/hang answered after %v, want the first-byte timeout of 1 s (and not far past it)", d)
	}
	failedOver, hung := 0, 0
	for _, r := range p.sink.all() {
		switch {
		case r.Route == "pool" && strings.Contains(r.RespHeaders, `"x-relay-attempts":"silent=upstream_timeout live=200"`):
			failedOver++
		case r.Route == "hang" && r.ErrorType == record.ErrUpstreamTimeout && r.Status == 504:
			hung++
		}
	}
	if failedOver < 1 || hung != 1 {
		t.Errorf("%d pool rows failed over from silent to live (want >= 1), %d hang rows upstream_timeout/504 (want 1)", failedOver, hung)
	}
	if accepted.Load() < 2 {
		t.Errorf("the silent target accepted %d connections, want >= 2", accepted.Load())
	}
}

// TestPoolFailoverWithinRequestTimeout: failover never takes a request past
// the server's whole-request timeout. Three silent targets, a first-byte
// timeout of 1 s and a request timeout of 1.5 s: the first attempt ends at
// 1 s, the second is cut at 1.5 s, and no third is made. Before the fix
// every attempt had a whole first-byte timeout of its own (the third
// target was tried, the answer came after 3 s; at 8 attempts and the
// defaults a request could wait 16 minutes against its 5).
func TestPoolFailoverWithinRequestTimeout(t *testing.T) {
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	var urls [3]string
	var accepted [3]*atomic.Int64
	for i := range urls {
		urls[i], accepted[i] = silentServer(t)
	}
	yaml := poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    first_byte_timeout: 1s
    failover: {on: [timeout], max_attempts: 3}
    upstreams:
      - {name: s1, url: "`+urls[0]+`"}
      - {name: s2, url: "`+urls[1]+`"}
      - {name: s3, url: "`+urls[2]+`"}
`, "rate_limit: {disabled: true}")
	yaml = strings.Replace(yaml, "shutdown_grace: 5s", "shutdown_grace: 5s\n  timeout: 1500ms", 1)
	p := startPool(t, yaml)
	start := time.Now()
	if code := p.try("/v1/chat/completions", nil); code != 504 {
		t.Fatalf("status %d, want 504", code)
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Errorf("answered after %v, before the request timeout of 1.5 s", d)
	}
	tried := accepted[0].Load() + accepted[1].Load() + accepted[2].Load()
	if tried < 1 || tried > 2 {
		t.Errorf("%d targets tried, want 2 (1 on a machine too busy to start the second within 1.5 s): none past the request timeout", tried)
	}
	rows := p.sink.all()
	if len(rows) != 1 || rows[0].ErrorType != record.ErrUpstreamTimeout || strings.Count(rows[0].RespHeaders, "=upstream_timeout") != int(tried) {
		t.Errorf("rows %+v: want one upstream_timeout row naming the %d attempts", rows, tried)
	}
}
