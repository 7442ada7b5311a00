package telemetry

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
)

var dashboardPath = filepath.Join("..", "deployments", "grafana", "dashboards", "stream-relay.json")

// dashboard is the part of a Grafana dashboard JSON the tests read.
type dashboard struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Datasource datasource      `json:"datasource"`
			Query      json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Title      string     `json:"title"`
	Type       string     `json:"type"`
	Datasource datasource `json:"datasource"`
	Panels     []panel    `json:"panels"` // collapsed rows
	Targets    []struct {
		RefID      string     `json:"refId"`
		Datasource datasource `json:"datasource"`
		Expr       string     `json:"expr"`
		RawSQL     string     `json:"rawSql"`
	} `json:"targets"`
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

// query is one panel target.
type query struct{ panel, expr, sql string }

func loadDashboard(t *testing.T) (prom, ch []query, templating []string) {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				ds := tg.Datasource
				if ds.Type == "" {
					ds = p.Datasource
				}
				switch ds.Type {
				case "prometheus":
					prom = append(prom, query{panel: p.Title, expr: tg.Expr})
				case "grafana-clickhouse-datasource":
					ch = append(ch, query{panel: p.Title, sql: tg.RawSQL})
				default:
					t.Errorf("panel %q target %s: datasource type %q", p.Title, tg.RefID, ds.Type)
				}
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		templating = append(templating, q.Query)
	}
	return prom, ch, templating
}

// exportedNames runs traffic of every kind through a Metrics and returns the
// metric names (without labels) of its WritePrometheus output.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	m := withTraffic("openai", "anthropic", "tts")
	m.SetUpstreams(func() []upstream.TargetStatus {
		return []upstream.TargetStatus{{Route: "openai", Target: "0", Healthy: true, Ejections: 1}}
	})
	m.SetCertExpiry(func() time.Time { return time.Unix(1893456000, 0) })
	names := map[string]bool{}
	for series := range scrape(t, m) {
		name, _, _ := strings.Cut(series, "{")
		names[name] = true
	}
	return names
}

// synthetic are series Prometheus makes itself for every scrape target.
var synthetic = map[string]bool{"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true}

func TestDashboardNamesOnlyExportedMetrics(t *testing.T) {
	exported := exportedNames(t)
	prom, ch, templating := loadDashboard(t)
	if len(prom) < 10 || len(ch) < 2 {
		t.Fatalf("dashboard has %d Prometheus and %d ClickHouse queries; want the full set", len(prom), len(ch))
	}
	used := map[string]bool{}
	for _, q := range prom {
		names := promMetricNames(q.expr)
		if len(names) == 0 {
			t.Errorf("panel %q: no metric in %q", q.panel, q.expr)
		}
		for _, n := range names {
			used[n] = true
			if !exported[n] && !synthetic[n] {
				t.Errorf("panel %q: %s is not exported by the relay (in %q)", q.panel, n, q.expr)
			}
		}
	}
	labelValues := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`)
	for _, q := range templating {
		mm := labelValues.FindStringSubmatch(q)
		if mm == nil || !exported[mm[1]] {
			t.Errorf("variable query %q does not read an exported metric", q)
		}
	}
	for _, core := range []string{"relay_requests_total", "relay_errors_total", "relay_active_connections",
		"relay_ttft_ms_bucket", "relay_duration_ms_bucket", "relay_storage_write_ms_bucket",
		"relay_storage_rows_written_total", "relay_storage_rows_spooled_total", "relay_storage_rows_dropped_total",
		"relay_storage_spool_bytes", "relay_ratelimit_decisions_total", "relay_idle_streams"} {
		if !used[core] {
			t.Errorf("no panel shows %s", core)
		}
	}
}

func TestPromMetricNames(t *testing.T) {
	tests := []struct {
		give string
		want []string
	}{
		{`sum by (route, status) (rate(relay_requests_total{route=~"$route"}[$__rate_interval]))`, []string{"relay_requests_total"}},
		{`histogram_quantile(0.95, sum by (le) (rate(relay_ttft_ms_bucket{route="a b"}[5m])))`, []string{"relay_ttft_ms_bucket"}},
		{`sum(rate(a_total[5m])) / clamp_min(sum(rate(b_total[5m])), 1e-9)`, []string{"a_total", "b_total"}},
		{`sum(up{job="stream-relay"}) > 0 and on (job) x`, []string{"up", "x"}},
		{`rate(process_cpu_seconds_total[1m] offset 5m)`, []string{"process_cpu_seconds_total"}},
	}
	for _, tt := range tests {
		if got := promMetricNames(tt.give); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.give, got, tt.want)
		}
	}
}

// promMetricNames returns the metric names a PromQL expression selects: the
// identifiers left once strings, label matchers, ranges and grouping
// clauses are removed, that are neither keywords nor function calls.
func promMetricNames(expr string) []string {
	for _, re := range promStrip {
		expr = re.ReplaceAllString(expr, " ")
	}
	var names []string
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c >= '0' && c <= '9' || c == '.':
			i++ // a number: skip it whole, so that 1e-9's "e" is not a name
			for i < len(expr) && (isIdentByte(expr[i]) || expr[i] == '.') {
				i++
			}
		case isIdentByte(c):
			j := i
			for j < len(expr) && isIdentByte(expr[j]) {
				j++
			}
			word := expr[i:j]
			rest := strings.TrimLeft(expr[j:], " \t\n")
			if !promKeywords[strings.ToLower(word)] && !strings.HasPrefix(rest, "(") && !slices.Contains(names, word) {
				names = append(names, word)
			}
			i = j
		default:
			i++
		}
	}
	return names
}

var promStrip = []*regexp.Regexp{
	regexp.MustCompile(`"(\\.|[^"\\])*"|'(\\.|[^'\\])*'`),
	regexp.MustCompile(`\{[^}]*\}`),
	regexp.MustCompile(`\[[^\]]*\]`),
	regexp.MustCompile(`(?i)\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`),
}

var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "offset": true, "bool": true, "inf": true, "nan": true,
}

func isIdentByte(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// TestDashboardClickHouseQueries runs the dashboard's ClickHouse panels, with
// Grafana's macros expanded as the grafana-clickhouse-datasource plugin does,
// against rows the real chlog writer stored in the real ClickHouse, and
// checks the numbers.
func TestDashboardClickHouseQueries(t *testing.T) {
	chURL := servicetest.ClickHouse(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	db := "relay_dash_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { _, _ = chQuery(chURL, "DROP DATABASE IF EXISTS "+db) })

	w, err := chlog.New(chlog.Options{URL: chURL, Database: db, SpoolDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		route, tenant string
		ttft          time.Duration
		in, out       int64
	}{
		{"openai", "acme", 100 * time.Millisecond, 10, 20},
		{"openai", "acme", 300 * time.Millisecond, 5, 5},
		{"anthropic", "globex", 50 * time.Millisecond, 1, 2},
		{"tts", "globex", 80 * time.Millisecond, -1, -1},
	}
	now := time.Now()
	for i, r := range rows {
		rec := finished(r.route, 200, "", r.ttft)
		copy(rec.ID[:], strings.Repeat(strconv.Itoa(i), record.IDLen))
		rec.Start, rec.Tenant, rec.TokensIn, rec.TokensOut = now, r.tenant, r.in, r.out
		w.Write(rec)
		record.Release(rec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.RowsWritten != int64(len(rows)) {
		t.Fatalf("rows written %d, want %d (stats %+v)", st.RowsWritten, len(rows), st)
	}

	_, ch, _ := loadDashboard(t)
	results := map[string][]map[string]any{}
	for _, q := range ch {
		if !strings.Contains(q.sql, "relay.stream_logs") {
			t.Errorf("panel %q does not read relay.stream_logs", q.panel)
		}
		sql := expandGrafanaMacros(q.sql, now.Add(-time.Hour), now.Add(time.Minute), 60)
		sql = strings.ReplaceAll(sql, "relay.stream_logs", db+".stream_logs")
		out, err := chQuery(chURL, sql+"\nFORMAT JSON")
		if err != nil {
			t.Errorf("panel %q: %v\n%s", q.panel, err, sql)
			continue
		}
		var res struct {
			Data []map[string]any `json:"data"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("panel %q: %v", q.panel, err)
		}
		if len(res.Data) == 0 {
			t.Errorf("panel %q: no rows", q.panel)
		}
		results[q.panel] = res.Data
	}

	tokens := results["Tokens by tenant (ClickHouse)"]
	wantTokens := map[string]float64{"acme": 40, "globex": 3}
	if len(tokens) != len(wantTokens) {
		t.Fatalf("tokens by tenant: %v", tokens)
	}
	for _, r := range tokens {
		if got := num(t, r["total_tokens"]); got != wantTokens[r["tenant_id"].(string)] {
			t.Errorf("tokens of %v: %v, want %v", r["tenant_id"], got, wantTokens[r["tenant_id"].(string)])
		}
	}
	p95 := map[string]float64{}
	for _, r := range results["TTFT p95 by route (ClickHouse)"] {
		p95[r["route"].(string)] = num(t, r["ttft_p95_ms"])
	}
	// quantile() interpolates: p95 of {100, 300} is 290.
	if p95["openai"] < 280 || p95["openai"] > 300 || p95["anthropic"] != 50 || p95["tts"] != 80 {
		t.Errorf("TTFT p95 by route: %v", p95)
	}
}

// expandGrafanaMacros expands the plugin macros the dashboard uses the way
// the grafana-clickhouse-datasource plugin does.
func expandGrafanaMacros(sql string, from, to time.Time, intervalS int) string {
	timeFilter := regexp.MustCompile(`\$__timeFilter\((\w+)\)`)
	sql = timeFilter.ReplaceAllStringFunc(sql, func(m string) string {
		col := timeFilter.FindStringSubmatch(m)[1]
		return col + " >= toDateTime(" + strconv.FormatInt(from.Unix(), 10) + ") AND " +
			col + " <= toDateTime(" + strconv.FormatInt(to.Unix(), 10) + ")"
	})
	return strings.ReplaceAll(sql, "$__interval_s", strconv.Itoa(intervalS))
}

func chQuery(chURL, sql string) (string, error) {
	resp, err := http.Post(chURL+"/?"+url.Values{"output_format_json_quote_64bit_integers": {"0"}}.Encode(), "text/plain", strings.NewReader(sql))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", &httpError{resp.StatusCode, string(bytes.TrimSpace(body))}
	}
	return string(body), nil
}

type httpError struct {
	status int
	body   string
}

func (e *httpError) Error() string {
	return "clickhouse: http " + strconv.Itoa(e.status) + ": " + e.body
}

func num(t *testing.T, v any) float64 {
	t.Helper()
	switch x := v.(type) {
	case float64:
		return x
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			t.Fatalf("not a number: %q", x)
		}
		return f
	}
	t.Fatalf("not a number: %#v", v)
	return 0
}
