package app

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestMetricsMetadata reads GET /metrics of a running relay (rate limits
// on, a stream, a refused key and a request no route matches behind it)
// and checks the exposition as a scraper takes it: it parses strictly
// (servicetest.ParseExposition: one TYPE and at most one HELP per family,
// before its samples, histograms coherent), every family has a TYPE, and
// every relay_* family a one-line HELP. When promtool is installed, its
// `check metrics` must parse the page too and find no problem in the
// relay's families other than the _ms unit of the timing histograms,
// whose names the dashboards use.
func TestMetricsMetadata(t *testing.T) {
	r := startRelayWith(t, "", func(c *Config) {
		c.RateLimit = RateLimitConfig{Default: 1000, Burst: 1000, OnRedisError: "local"}
	})
	resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true}`, map[string]string{mockllm.HeaderChunks: "3"})
	readAll(t, resp)
	r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	resp = r.post(t, "/v1/chat/completions", `{}`, map[string]string{"Authorization": "Bearer sk-wrong"})
	readAll(t, resp)
	r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	resp = r.post(t, "/no/such/route", `{}`, nil)
	readAll(t, resp)
	r.rows.wait(t, resp.Header.Get("X-Request-Id"))

	resp, err := testClient.Get(r.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", resp.StatusCode)
	}
	fams, err := servicetest.ParseExposition([]byte(page))
	if err != nil {
		t.Fatalf("%v\n%s", err, page)
	}
	for name, f := range fams {
		if f.Type == "" {
			t.Errorf("%s has no TYPE", name)
		}
		if strings.HasPrefix(name, "relay_") && (len(f.Help) < 10 || strings.Contains(f.Help, `\`)) {
			t.Errorf("%s: HELP %q, want a one-line description", name, f.Help)
		}
		if strings.HasPrefix(name, "relay_") && f.Type == "histogram" && (f.Series == 0 || f.Counted != f.Series) {
			t.Errorf("%s: %d of %d series have _sum and _count", name, f.Counted, f.Series)
		}
	}
	for name, typ := range map[string]string{
		"relay_requests_total": "counter", "relay_errors_total": "counter", "relay_active_connections": "gauge",
		"relay_ttft_ms": "histogram", "relay_duration_ms": "histogram", "relay_storage_write_ms": "histogram",
		"relay_storage_rows_spooled_total": "counter", "relay_storage_spool_bytes": "gauge",
		"relay_ratelimit_decisions_total": "counter", "relay_upstream_healthy": "gauge",
		"relay_spliced_bytes_total": "counter", "relay_idle_streams": "gauge",
		"go_goroutines": "gauge", "process_open_fds": "gauge",
	} {
		if f := fams[name]; f == nil || f.Type != typ {
			t.Errorf("%s: %+v, want TYPE %s", name, f, typ)
		}
	}
	t.Logf("%d families, %d of them the relay's", len(fams), countPrefix(fams, "relay_"))

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is required in CI (Debian package prometheus; make test installs it)")
		}
		t.Logf("promtool not installed (Debian package prometheus): its check skipped")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(page)
	out, err := cmd.CombinedOutput()
	// Exit status 3 is lint problems alone (the library's Go and process
	// metric names among them); anything else but 0 is a page that does
	// not parse.
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 3) {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for _, line := range bytes.Split(out, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("relay_")) && !bytes.HasSuffix(line, []byte("metric names should not contain abbreviated units")) {
			t.Errorf("promtool: %s", line)
		}
	}
}

func countPrefix[V any](m map[string]V, prefix string) int {
	n := 0
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n
}
