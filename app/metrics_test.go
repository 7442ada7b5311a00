package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/telemetry"
)

// TestMetricsPrometheusScrape runs Debian's prometheus against the relay's
// GET /metrics, drives known traffic and checks what Prometheus' query API
// answers: the target is up, the request counter equals the streams sent,
// rate() sees them, the TTFT median lies in the bucket of the mock's
// first-byte delay, and the 401s show as unauthorized errors.
func TestMetricsPrometheusScrape(t *testing.T) {
	bin := prometheusBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	r := startRelay(t, "")
	prom := startPrometheus(t, bin, strings.TrimPrefix(r.base, "http://"))
	// The relay's series exist at 0 from the start; one scrape of them
	// before the traffic lets rate() and increase() see every request.
	prom.waitFor(ctx, t, `up{job="stream-relay"}`, func(v float64) bool { return v == 1 })
	prom.waitFor(ctx, t, `count(relay_ttft_ms_bucket{route="openai"})`, func(v float64) bool { return v > 0 })

	// The mock holds the response headers for 150ms and sends the first
	// content token right after them, so every TTFT falls in the bucket
	// (100, 250] and the interpolated median is inside it.
	const streams, unauthorized = 20, 3
	hdr := map[string]string{mockllm.HeaderFirstByteDelay: "150", mockllm.HeaderChunks: "3", mockllm.HeaderDelayMs: "5"}
	for i := range streams {
		resp := r.post(t, "/v1/chat/completions", `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`, hdr)
		if body := readAll(t, resp); resp.StatusCode != http.StatusOK || !strings.Contains(body, "[DONE]") {
			t.Fatalf("stream %d: status %d body %q", i, resp.StatusCode, body)
		}
	}
	for i := range unauthorized {
		resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{"Authorization": "Bearer sk-wrong"})
		if readAll(t, resp); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bad key %d: status %d, want 401", i, resp.StatusCode)
		}
	}

	prom.waitFor(ctx, t, `sum(relay_requests_total{route="openai",status="200"})`, func(v float64) bool { return v == streams })
	prom.waitFor(ctx, t, `sum(relay_errors_total{type="unauthorized"})`, func(v float64) bool { return v == unauthorized })
	prom.waitFor(ctx, t, `sum(relay_requests_total{route="openai",status="401"})`, func(v float64) bool { return v == unauthorized })
	prom.waitFor(ctx, t, `sum(rate(relay_requests_total{route="openai"}[30s]))`, func(v float64) bool { return v > 0 })
	prom.waitFor(ctx, t, `sum(increase(relay_requests_total{route="openai",status="200"}[1m]))`, func(v float64) bool { return v > 0 })
	prom.waitFor(ctx, t, `sum(relay_ttft_ms_count{route="openai"})`, func(v float64) bool { return v == streams })
	p50 := prom.waitFor(ctx, t, `histogram_quantile(0.5, sum(rate(relay_ttft_ms_bucket{route="openai"}[1m])) by (le))`,
		func(v float64) bool { return v > 100 && v <= 250 })
	t.Logf("TTFT p50 from Prometheus: %.1f ms", p50)
	prom.waitFor(ctx, t, `histogram_quantile(0.95, sum(rate(relay_duration_ms_bucket{route="openai"}[1m])) by (le))`,
		func(v float64) bool { return v > 100 })
	prom.waitFor(ctx, t, `sum(relay_active_connections)`, func(v float64) bool { return v == 0 })
	prom.waitFor(ctx, t, `sum(relay_bytes_out_total{route="openai"})`, func(v float64) bool { return v > 0 })
	prom.waitFor(ctx, t, `relay_storage_rows_spooled_total`, func(v float64) bool { return v >= 0 })
	prom.waitFor(ctx, t, `go_goroutines`, func(v float64) bool { return v > 0 })
}

// TestMetricsEndpoint reads the relay's GET /metrics directly.
func TestMetricsEndpoint(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/chat/completions", `{}`, map[string]string{"Authorization": "Bearer sk-wrong"})
	readAll(t, resp)
	r.rows.wait(t, resp.Header.Get("X-Request-Id"))

	series := getMetrics(t, r.base+"/metrics")
	want := map[string]float64{
		`relay_requests_total{route="openai",status="401"}`:      1,
		`relay_errors_total{route="openai",type="unauthorized"}`: 1,
		`relay_active_connections{route="tts"}`:                  0,
		`relay_requests_total{route="unmatched",status="404"}`:   0, // scrapes are not relayed requests
	}
	for s, v := range want {
		if got, ok := series[s]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", s, got, ok, v)
		}
	}
	for _, name := range []string{`relay_storage_rows_spooled_total`, `relay_ttft_ms_count{route="anthropic"}`, `relay_storage_write_ms_count`} {
		if _, ok := series[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
}

// TestMetricsAdminAddr serves /metrics on metrics.addr and not on the main
// port, where the path is an ordinary unmatched request.
func TestMetricsAdminAddr(t *testing.T) {
	addr := servicetest.FreeAddr(t)
	r := startRelay(t, "metrics:\n  addr: "+addr+"\n")
	series := getMetrics(t, "http://"+addr+"/metrics")
	if _, ok := series[`relay_requests_total{route="openai",status="200"}`]; !ok {
		t.Fatalf("admin /metrics lacks the request counter: %d series", len(series))
	}
	resp, err := testClient.Get(r.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("main port /metrics: status %d, want 404", resp.StatusCode)
	}
	r.stop(t)
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("admin listener still open after Shutdown")
	}
}

// TestMetricsStorageClickHouse checks the storage series against the real
// ClickHouse: inserts are timed and the rows written counted.
func TestMetricsStorageClickHouse(t *testing.T) {
	chURL := servicetest.ClickHouse(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	db := "relay_metrics_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		resp, err := http.Post(chURL+"/", "text/plain", strings.NewReader("DROP DATABASE IF EXISTS "+db))
		if err == nil {
			_ = resp.Body.Close()
		}
	})
	mock, mockBase, err := mockllm.Listen("127.0.0.1:0", mockllm.Options{RequireKey: providerKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	cfg, err := Parse([]byte(testConfig(mockBase, t.TempDir(), "")))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Storage.ClickHouse.URL, cfg.Storage.ClickHouse.Database = chURL, db
	cfg.Storage.ClickHouse.FlushInterval = 200 * time.Millisecond
	r := startApp(t, cfg, mock)

	const n = 5
	for range n {
		readAll(t, r.post(t, "/v1/chat/completions", `{"stream":true}`, nil))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := getMetrics(t, r.base+"/metrics")
		if s["relay_storage_rows_written_total"] >= n && s["relay_storage_write_ms_count"] >= 1 &&
			s[`relay_storage_inserts_total{result="ok"}`] >= 1 && s["relay_storage_insert_rows_total"] >= n {
			if s["relay_storage_rows_dropped_total"] != 0 {
				t.Errorf("rows dropped: %v", s["relay_storage_rows_dropped_total"])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("storage series after 20s: written %v, inserts %v, write_ms_count %v",
				s["relay_storage_rows_written_total"], s[`relay_storage_inserts_total{result="ok"}`], s["relay_storage_write_ms_count"])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetricsHandler checks the Fiber handler alone.
func TestMetricsHandler(t *testing.T) {
	m := telemetry.New([]string{"openai"})
	rec := record.Acquire(0)
	rec.Route, rec.Status = "openai", http.StatusOK
	m.Write(rec)
	record.Release(rec)
	f := fiber.New(fiber.Config{DisableStartupMessage: true})
	f.Get("/metrics", metricsHandler(m))
	resp, err := f.Test(httptest.NewRequest(http.MethodGet, "/metrics", nil), 5000)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("content type %q", ct)
	}
	if !bytes.Contains(body, []byte(`relay_requests_total{route="openai",status="200"} 1`+"\n")) {
		t.Errorf("body lacks the request:\n%.2000s", body)
	}
}

// TestServeAdmin checks the admin listener alone.
func TestServeAdmin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var draining atomic.Bool
	stop := serveAdminOn(ln, telemetry.New([]string{"tts"}), false, func() bool { return !draining.Load() })
	base := "http://" + ln.Addr().String()
	if _, ok := getMetrics(t, base+"/metrics")[`relay_active_connections{route="tts"}`]; !ok {
		t.Error("admin /metrics lacks relay_active_connections")
	}
	resp, err := testClient.Post(base+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: status %d, want 405", resp.StatusCode)
	}
	for _, tt := range []struct {
		draining bool
		path     string
		status   int
	}{{false, "/healthz", 200}, {false, "/readyz", 200}, {true, "/healthz", 200}, {true, "/readyz", 503}} {
		draining.Store(tt.draining)
		resp, err := testClient.Get(base + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != tt.status {
			t.Errorf("%s (draining %v): status %d %q, want %d", tt.path, tt.draining, resp.StatusCode, body, tt.status)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := serveAdmin("127.0.0.1:bad", nil, false, nil); err == nil || !strings.Contains(err.Error(), "metrics.addr=127.0.0.1:bad") {
		t.Errorf("bad addr: err %v, want one naming metrics.addr", err)
	}
}

// getMetrics fetches a /metrics page and returns its samples by series.
func getMetrics(t *testing.T, u string) map[string]float64 {
	t.Helper()
	resp, err := testClient.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", u, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("GET %s: content type %q", u, ct)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		i := strings.LastIndexByte(line, ' ')
		if line == "" || line[0] == '#' || i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("malformed sample %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// prometheusBinary finds Debian's prometheus: a test failure under CI, a
// loud skip on a developer's machine without it.
func prometheusBinary(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("prometheus is required in CI and missing: %v (deployments/local/services.sh start installs it)", err)
		}
		t.Skipf("SKIPPED: prometheus binary not found (%v); apt-get install prometheus or run `make test`", err)
	}
	return bin
}

// prometheus is a running Prometheus server of one test.
type prometheus struct {
	base string
	log  string
}

// startPrometheus runs bin from a temp dir with deployments/prometheus/
// prometheus.test.yml aimed at target, and kills it when the test ends.
func startPrometheus(t *testing.T, bin, target string) *prometheus {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join("..", "deployments", "prometheus", "prometheus.test.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, bytes.ReplaceAll(tmpl, []byte("RELAY_TARGET"), []byte(target)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := servicetest.FreeAddr(t)
	p := &prometheus{base: "http://" + addr, log: filepath.Join(dir, "prometheus.log")}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+conf,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// If the test binary dies, the kernel ends prometheus too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("prometheus log:\n%s", b)
		}
	})
	return p
}

// query runs an instant query and returns the value of its single sample;
// ok is false when the result is empty.
func (p *prometheus) query(q string) (v float64, ok bool, err error) {
	resp, err := testClient.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, false, fmt.Errorf("status %d: %w", resp.StatusCode, err)
	}
	if out.Status != "success" {
		return 0, false, fmt.Errorf("query %s: %s", q, out.Error)
	}
	switch len(out.Data.Result) {
	case 0:
		return 0, false, nil
	case 1:
	default:
		return 0, false, fmt.Errorf("query %s: %d samples, want one", q, len(out.Data.Result))
	}
	s, _ := out.Data.Result[0].Value[1].(string)
	v, err = strconv.ParseFloat(s, 64)
	return v, err == nil, err
}

// waitFor polls q until it returns a sample that ok accepts, and returns it.
// It fails the test when ctx ends first.
func (p *prometheus) waitFor(ctx context.Context, t *testing.T, q string, ok func(float64) bool) float64 {
	t.Helper()
	var last string
	for {
		v, found, err := p.query(q)
		switch {
		case err != nil:
			last = err.Error()
		case !found:
			last = "no sample"
		case ok(v):
			return v
		default:
			last = strconv.FormatFloat(v, 'g', -1, 64)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: last answer %s when the time budget ran out: %v", q, last, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// TestBytesInCountsBodiesReceived: relay_bytes_in_total counts the body
// bytes received: a refusal that read the whole body first (a 505)
// counts them, one before the body (413 over max_body_bytes, declaring a
// petabyte) counts nothing, though each row keeps the declared length.
func TestBytesInCountsBodiesReceived(t *testing.T) {
	r := startRelay(t, "")
	body := strings.Repeat("x", 1000)
	rawExchange(t, r.base, "POST /v1/chat/completions HTTP/2.0\r\nHost: relay\r\nContent-Length: 1000\r\n\r\n"+body, 10*time.Second)
	rawExchange(t, r.base, "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nContent-Length: 888888888888888\r\n\r\nabc", 10*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for r.rows.count(nil) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := getMetrics(t, r.base+"/metrics")[`relay_bytes_in_total{route="openai"}`]; got != 1000 {
		t.Errorf("relay_bytes_in_total = %v, want the 1000 bytes received", got)
	}
}
