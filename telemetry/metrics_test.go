package telemetry

import (
	"bufio"
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/quota"
	"github.com/stream-relay/stream-relay/record"
)

// scrape returns every sample of m's output by series (name and labels as
// written).
func scrape(t testing.TB, m *Metrics) map[string]float64 {
	t.Helper()
	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	out := map[string]float64{}
	sc := bufio.NewScanner(&buf)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("malformed line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("malformed value in %q: %v", line, err)
		}
		if _, dup := out[line[:i]]; dup {
			t.Fatalf("series %s written twice", line[:i])
		}
		out[line[:i]] = v
	}
	return out
}

// finished returns a record as the relay hands it to its sinks.
func finished(route string, status int, errType string, ttft time.Duration) *record.Record {
	r := record.Acquire(0)
	r.Route, r.Status, r.ErrorType = route, status, errType
	r.TTFB, r.TTFT = ttft/2, ttft
	r.Duration = 3 * time.Second
	r.BytesIn, r.BytesOut = 100, 2000
	r.TokensIn, r.TokensOut = 12, 40
	return r
}

func TestWriteUpdatesRouteSeries(t *testing.T) {
	m := New([]string{"openai", "tts"})
	for range 3 {
		r := finished("openai", 200, "", 180*time.Millisecond)
		m.Start(r)
		m.Write(r)
		record.Release(r)
	}
	r := finished("openai", 401, record.ErrUnauthorized, record.None)
	r.TTFB = record.None
	r.TokensIn, r.TokensOut = -1, -1
	m.Start(r)
	m.Write(r)
	record.Release(r)

	got := scrape(t, m)
	want := map[string]float64{
		`relay_requests_total{route="openai",status="200"}`:        3,
		`relay_requests_total{route="openai",status="401"}`:        1,
		`relay_requests_total{route="tts",status="200"}`:           0,
		`relay_errors_total{route="openai",type="unauthorized"}`:   1,
		`relay_errors_total{route="openai",type="upstream_reset"}`: 0,
		`relay_active_connections{route="openai"}`:                 0,
		`relay_duration_ms_count{route="openai"}`:                  4,
		`relay_duration_ms_bucket{route="openai",le="2500"}`:       0,
		`relay_duration_ms_bucket{route="openai",le="5000"}`:       4,
		`relay_ttft_ms_count{route="openai"}`:                      3,
		`relay_ttft_ms_bucket{route="openai",le="100"}`:            0,
		`relay_ttft_ms_bucket{route="openai",le="250"}`:            3,
		`relay_ttft_ms_sum{route="openai"}`:                        540,
		`relay_ttfb_ms_bucket{route="openai",le="100"}`:            3,
		`relay_bytes_in_total{route="openai"}`:                     400,
		`relay_bytes_out_total{route="openai"}`:                    8000,
		`relay_tokens_total{route="openai",direction="in"}`:        36,
		`relay_tokens_total{route="openai",direction="out"}`:       120,
		`relay_requests_total{route="unmatched",status="404"}`:     0,
		`relay_errors_total{route="unmatched",type="not_found"}`:   0,
		`relay_storage_write_ms_count`:                             0,
		`relay_storage_inserts_total{result="ok"}`:                 0,
	}
	for series, v := range want {
		if g, ok := got[series]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", series, g, ok, v)
		}
	}
}

func TestRouteLabel(t *testing.T) {
	tests := []struct {
		name, give, want string
	}{
		{"configured", "tts", "tts"},
		{"no route matched", "", Unmatched},
		{"unknown name", "gone", Unmatched},
		{"escaped", `we"ird\`, `we\"ird\\`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New([]string{"tts", `we"ird\`, "tts", ""})
			r := finished(tt.give, 404, record.ErrNotFound, record.None)
			m.Start(r)
			m.Write(r)
			record.Release(r)
			got := scrape(t, m)
			series := `relay_errors_total{route="` + tt.want + `",type="not_found"}`
			if got[series] != 1 {
				t.Errorf("%s = %v, want 1", series, got[series])
			}
		})
	}
}

func TestActiveConnections(t *testing.T) {
	m := New([]string{"openai"})
	a, b := finished("openai", 200, "", 0), finished("", 404, record.ErrNotFound, 0)
	m.Start(a)
	m.Start(a)
	m.Start(b)
	got := scrape(t, m)
	if got[`relay_active_connections{route="openai"}`] != 2 || got[`relay_active_connections{route="unmatched"}`] != 1 {
		t.Fatalf("open streams: %v / %v, want 2 / 1", got[`relay_active_connections{route="openai"}`], got[`relay_active_connections{route="unmatched"}`])
	}
	m.Write(a)
	m.Write(a)
	m.Write(b)
	got = scrape(t, m)
	if got[`relay_active_connections{route="openai"}`] != 0 || got[`relay_active_connections{route="unmatched"}`] != 0 {
		t.Fatal("streams still open after their records were written")
	}
}

func TestStatusLabels(t *testing.T) {
	tests := []struct {
		give int
		want string
	}{
		{200, "200"}, {418, "418"}, {599, "599"}, {100, "100"}, {99, "other"}, {600, "other"}, {-1, "other"},
	}
	m := New([]string{"r"})
	for _, tt := range tests {
		r := finished("r", tt.give, "", 0)
		m.Write(r)
		record.Release(r)
	}
	got := scrape(t, m)
	for _, tt := range tests {
		series := `relay_requests_total{route="r",status="` + tt.want + `"}`
		want := 1.0
		if tt.want == "other" {
			want = 3
		}
		if got[series] != want {
			t.Errorf("status %d: %s = %v, want %v", tt.give, series, got[series], want)
		}
	}
}

func TestUnknownErrorTypeCountsAsInternal(t *testing.T) {
	m := New(nil)
	r := finished("", 500, "made_up", 0)
	m.Write(r)
	record.Release(r)
	if got := scrape(t, m)[`relay_errors_total{route="unmatched",type="internal"}`]; got != 1 {
		t.Fatalf("internal = %v, want 1", got)
	}
}

func TestObserveInsert(t *testing.T) {
	m := New(nil)
	m.ObserveInsert(30*time.Millisecond, 500, nil)
	m.ObserveInsert(2*time.Second, 100, errors.New("boom"))
	got := scrape(t, m)
	want := map[string]float64{
		`relay_storage_write_ms_count`:                2,
		`relay_storage_write_ms_bucket{le="50"}`:      1,
		`relay_storage_write_ms_bucket{le="2500"}`:    2,
		`relay_storage_inserts_total{result="ok"}`:    1,
		`relay_storage_inserts_total{result="error"}`: 1,
		`relay_storage_insert_rows_total`:             500,
	}
	for series, v := range want {
		if got[series] != v {
			t.Errorf("%s = %v, want %v", series, got[series], v)
		}
	}
}

func TestScrapeTimeStats(t *testing.T) {
	m := New(nil)
	got := scrape(t, m)
	for _, absent := range []string{"relay_storage_rows_written_total", `relay_ratelimit_decisions_total{result="admitted",source="redis"}`} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s exported before its stats function was set", absent)
		}
	}
	st := chlog.Stats{RowsWritten: 10, RowsSpooled: 4, RowsReplayed: 3, RowsDropped: 1, InsertErrors: 2, WALErrors: 5, SpoolFiles: 1, SpoolBytes: 4096}
	m.SetStorageStats(func() chlog.Stats { return st })
	var qs quota.Stats
	qs.Admitted[quota.SourceRedis] = 7
	qs.Refused[quota.SourceCache] = 2
	qs.ToFallback, qs.ToRedis, qs.RedisErrors = 1, 1, 6
	qs.Leases, qs.LeaseRenewals, qs.LeaseTokensReturned = 9, 8, 3
	m.SetLimiterStats(func() quota.Stats { return qs })
	got = scrape(t, m)
	want := map[string]float64{
		"relay_storage_rows_written_total":                                  10,
		"relay_storage_rows_spooled_total":                                  4,
		"relay_storage_rows_replayed_total":                                 3,
		"relay_storage_rows_dropped_total":                                  1,
		"relay_storage_insert_errors_total":                                 2,
		"relay_storage_wal_errors_total":                                    5,
		"relay_storage_spool_files":                                         1,
		"relay_storage_spool_bytes":                                         4096,
		`relay_ratelimit_decisions_total{result="admitted",source="redis"}`: 7,
		`relay_ratelimit_decisions_total{result="refused",source="cache"}`:  2,
		`relay_ratelimit_decisions_total{result="refused",source="local"}`:  0,
		`relay_ratelimit_switches_total{to="fallback"}`:                     1,
		`relay_ratelimit_switches_total{to="redis"}`:                        1,
		"relay_ratelimit_redis_errors_total":                                6,
		"relay_ratelimit_leases_total":                                      9,
		"relay_ratelimit_lease_renewals_total":                              8,
		"relay_ratelimit_lease_tokens_returned_total":                       3,
	}
	for series, v := range want {
		if g, ok := got[series]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", series, g, ok, v)
		}
	}
	for _, process := range []string{"go_goroutines", "process_resident_memory_bytes", "process_open_fds"} {
		if _, ok := got[process]; !ok {
			t.Errorf("%s missing", process)
		}
	}
}

func TestSetsAreIndependent(t *testing.T) {
	a, b := New([]string{"openai"}), New([]string{"openai"})
	r := finished("openai", 200, "", 0)
	a.Write(r)
	record.Release(r)
	if got := scrape(t, b)[`relay_requests_total{route="openai",status="200"}`]; got != 0 {
		t.Fatalf("a request on one Metrics shows on another: %v", got)
	}
}

// withTraffic returns Metrics for routes that saw a stream, an upstream
// reset and an unmatched path, one insert and its storage and limiter
// sources set: every family the relay writes at scrape time has a sample.
func withTraffic(routes ...string) *Metrics {
	m := New(routes)
	for _, r := range []*record.Record{
		finished("openai", 200, "", 150*time.Millisecond),
		finished("tts", 502, record.ErrUpstreamReset, 20*time.Millisecond),
		finished("", 404, record.ErrNotFound, record.None),
	} {
		m.Start(r)
		m.Write(r)
		record.Release(r)
	}
	m.ObserveInsert(12*time.Millisecond, 3, nil)
	m.SetStorageStats(func() chlog.Stats { return chlog.Stats{RowsWritten: 3} })
	m.SetStorageNodeErrors(func() []chlog.NodeErrors { return []chlog.NodeErrors{{Node: "127.0.0.1:8123", Errors: 1}} })
	m.SetLimiterStats(func() quota.Stats { return quota.Stats{} })
	return m
}

// TestDeclaredBytesNotCounted: a request refused before its body was read
// keeps its declared Content-Length in its row, but the byte counter counts
// bytes received: one 150-byte request declaring a petabyte moved it by a
// petabyte.
func TestDeclaredBytesNotCounted(t *testing.T) {
	m := New([]string{"r"})
	refused := finished("r", 413, record.ErrBodyTooLarge, 0)
	refused.BytesIn, refused.BytesInDeclared = 1<<50, true
	m.Start(refused)
	m.Write(refused)
	read := finished("r", 200, "", 0)
	m.Start(read)
	m.Write(read)
	if got := scrape(t, m)[`relay_bytes_in_total{route="r"}`]; got != 100 {
		t.Fatalf("relay_bytes_in_total = %v, want the 100 bytes read", got)
	}
}

// TestCommonStatusesUpFront: the statuses every ws route (101) and client
// that leaves early (499) make exist before their first request, so that
// rate() and increase() see that one.
func TestCommonStatusesUpFront(t *testing.T) {
	got := scrape(t, New([]string{"r"}))
	for _, st := range []string{"101", "499", "405", "408", "431", "505"} {
		if v, ok := got[`relay_requests_total{route="r",status="`+st+`"}`]; !ok || v != 0 {
			t.Errorf("status %s: %v (registered %v), want 0 before any request", st, v, ok)
		}
	}
}
