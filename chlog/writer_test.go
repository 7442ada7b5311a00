package chlog

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

func newWriter(t testing.TB, o Options) *Writer {
	t.Helper()
	if o.SpoolDir == "" {
		o.SpoolDir = t.TempDir()
	}
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	w, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return w
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		give Options
		want string
	}{
		{"batch rows", Options{BatchRows: -1}, "chlog: batch_rows=-1: must be > 0"},
		{"batch bytes", Options{BatchBytes: -5}, "chlog: batch_bytes=-5: must be > 0"},
		{"durability", Options{Durability: "fsync"}, `chlog: durability="fsync": must be "batch" or "wal"`},
		{"database", Options{Database: "a;b"}, `chlog: database="a;b": must match [A-Za-z_][A-Za-z0-9_]*`},
		{"retries", Options{Retries: -2}, "chlog: retries=-2: must be >= -1"},
		{"compression", Options{Compression: "zstd"}, `chlog: compression="zstd": must be "auto", "lz4" or "none"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.give.SpoolDir = t.TempDir()
			_, err := New(tt.give)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v; want %s", err, tt.want)
			}
		})
	}
}

// roundTripRecords are the representative rows: SSE with chunks, raw audio
// in meta mode, an upstream error without TTFT or usage, a truncated capture.
func roundTripRecords() []*record.Record {
	sse := sseRecord(1, 3)

	raw := record.Acquire(4 << 20)
	raw.ID = newID(2)
	raw.Start = time.Unix(1_750_000_000, 0)
	raw.Route, raw.Kind, raw.Capture = "tts", record.KindRaw, false
	raw.Tenant, raw.Method, raw.Path, raw.Status = "tenant-b", "POST", "/v1/audio/speech", 200
	raw.TTFB, raw.TTFT, raw.Duration = 50*time.Millisecond, 55*time.Millisecond, 900*time.Millisecond
	raw.SetRequestBody([]byte(`{"model":"tts-1","input":"hi"}`))
	raw.AddChunk([]byte("\xff\xf3audio1"), 55*time.Millisecond)
	raw.AddChunk([]byte("audio2"), 70*time.Millisecond)

	errRec := record.Acquire(4 << 20)
	errRec.ID = newID(3)
	errRec.Start = time.Unix(1_750_000_100, 0)
	errRec.Route, errRec.Capture, errRec.Status, errRec.ErrorType = "openai", true, 502, record.ErrUpstreamConnect
	errRec.Duration = 3 * time.Second

	trunc := record.Acquire(16)
	trunc.ID = newID(4)
	trunc.Start = time.Unix(1_750_000_200, 0)
	trunc.Route, trunc.Capture, trunc.Status = "openai", true, 200
	trunc.SetRequestBody([]byte(`{"model":"m"}`))
	trunc.AddChunk([]byte("0123456789"), time.Millisecond)
	trunc.AddChunk([]byte("0123456789"), 2*time.Millisecond)
	return []*record.Record{sse, raw, errRec, trunc}
}

// TestRowRoundTrip: every field of the representative rows reads back as
// written, with inserts compressed or not.
func TestRowRoundTrip(t *testing.T) {
	for _, mode := range []string{CompressionLZ4, CompressionNone} {
		t.Run(mode, func(t *testing.T) { testRowRoundTrip(t, mode) })
	}
}

func testRowRoundTrip(t *testing.T, compression string) {
	chURL, db := testDB(t)
	w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: time.Hour, Compression: compression})
	recs := roundTripRecords()
	for _, r := range recs {
		w.Write(r)
	}
	flush(t, w)
	closeWriter(t, w)

	out := mustQuery(t, chURL, db, `SELECT request_id, toUnixTimestamp(created_at) AS ts, route, tenant_id, key_id, model,
		method, path, upstream, status, error_type, ttfb_ms, ttft_ms, duration_ms, bytes_in, bytes_out, chunk_count,
		tokens_in, tokens_out, request_headers, response_headers, request_body, response_chunks, chunk_offsets_ms,
		truncated, client_ip, user_agent, instance FROM stream_logs FORMAT JSONEachRow`)
	got := map[string]map[string]any{}
	for _, row := range rowsOf(t, out) {
		got[row["request_id"].(string)] = row
	}
	if len(got) != len(recs) {
		t.Fatalf("%d rows; want %d", len(got), len(recs))
	}
	for _, r := range recs {
		row := got[string(r.ID[:])]
		if row == nil {
			t.Fatalf("row %s missing", r.ID[:])
		}
		want := expectedRow(r)
		for k, v := range want {
			if g := fmt.Sprint(row[k]); g != v {
				t.Errorf("%s %s = %s; want %s", r.Route, k, g, v)
			}
		}
	}
}

// expectedRow renders r the way JSONEachRow prints its row.
func expectedRow(r *record.Record) map[string]string {
	ms := func(d time.Duration) string {
		if d < 0 {
			return "<nil>"
		}
		return fmt.Sprint(int64(d / time.Millisecond))
	}
	tok := func(n int64) string {
		if n < 0 {
			return "<nil>"
		}
		return fmt.Sprint(n)
	}
	b2i := map[bool]string{false: "0", true: "1"}
	chunks := []any{}
	body := ""
	if r.Capture {
		body = string(r.RequestBody)
		for i := range r.Chunks.Len() {
			chunks = append(chunks, string(r.Chunks.Chunk(i)))
		}
	}
	offs := []any{}
	for _, at := range r.Chunks.AtMS {
		offs = append(offs, json.Number(fmt.Sprint(at)))
	}
	return map[string]string{
		"ts": fmt.Sprint(r.Start.Unix()), "route": r.Route, "tenant_id": r.Tenant, "key_id": r.KeyID,
		"model": r.Model, "method": r.Method, "path": r.Path, "upstream": r.Upstream,
		"status": fmt.Sprint(r.Status), "error_type": r.ErrorType,
		"ttfb_ms": ms(r.TTFB), "ttft_ms": ms(r.TTFT), "duration_ms": ms(r.Duration),
		"bytes_in": fmt.Sprint(r.BytesIn), "bytes_out": fmt.Sprint(r.BytesOut), "chunk_count": fmt.Sprint(r.ChunkCount),
		"tokens_in": tok(r.TokensIn), "tokens_out": tok(r.TokensOut),
		"request_headers": string(r.RequestHeaders), "response_headers": string(r.ResponseHeaders),
		"request_body": body, "response_chunks": fmt.Sprint(chunks), "chunk_offsets_ms": fmt.Sprint(offs),
		"truncated": b2i[r.Truncated], "client_ip": r.ClientIP, "user_agent": r.UserAgent, "instance": r.Instance,
	}
}

func TestRoundTripCases(t *testing.T) {
	// Guard the test data itself: each case shows what it claims to.
	recs := roundTripRecords()
	if recs[1].Capture || recs[1].Chunks.Len() != 2 {
		t.Fatal("raw record should be meta mode with 2 chunk times")
	}
	if recs[2].TTFT != record.None || recs[2].TokensIn != -1 {
		t.Fatal("error record should have NULL ttft and tokens")
	}
	if !recs[3].Truncated || recs[3].Chunks.Len() != 1 {
		t.Fatalf("truncated record: truncated=%v chunks=%d", recs[3].Truncated, recs[3].Chunks.Len())
	}
}

// The three queries of the product README, verbatim.
const (
	queryTTFT = `SELECT
    route,
    quantile(0.95)(ttft_ms) as p95_ttft
FROM stream_logs
WHERE created_at > now() - INTERVAL 10 MINUTE
  AND ttft_ms IS NOT NULL
GROUP BY route;`
	queryTokens = `SELECT
    tenant_id,
    sum(tokens_in) as total_in,
    sum(tokens_out) as total_out
FROM stream_logs
WHERE created_at > today()
GROUP BY tenant_id;`
	queryRequest = `SELECT
    request_id,
    request_body,
    response_chunks
FROM stream_logs
WHERE request_id = 'xxx';`
)

func TestProductQueries(t *testing.T) {
	chURL, db := testDB(t)
	w := newWriter(t, Options{URL: chURL, Database: db, FlushInterval: time.Hour})
	now := time.Now()
	mk := func(i int, route, tenant string, ttft time.Duration, in, out int64, at time.Time) *record.Record {
		r := sseRecord(i, 2)
		r.Route, r.Tenant, r.TTFT, r.TokensIn, r.TokensOut, r.Start = route, tenant, ttft, in, out, at
		return r
	}
	// openai: TTFT 100..1000 ms (10 rows, p95 = 955 by linear interpolation);
	// one old row (20 minutes ago) and one without TTFT that must not count.
	for i := 1; i <= 10; i++ {
		w.Write(mk(i, "openai", "t1", time.Duration(i*100)*time.Millisecond, 10, 20, now.Add(-time.Minute)))
	}
	w.Write(mk(11, "openai", "t1", 99*time.Second, 1, 1, now.Add(-20*time.Minute)))
	w.Write(mk(12, "openai", "t2", record.None, -1, -1, now.Add(-time.Minute)))
	w.Write(mk(13, "anthropic", "t2", 300*time.Millisecond, 5, 7, now.Add(-time.Minute)))
	last := mk(14, "anthropic", "t2", 300*time.Millisecond, 5, 7, now.Add(-time.Minute))
	id := string(last.ID[:])
	w.Write(last)
	closeWriter(t, w)

	ttft := mustQuery(t, chURL, db, strings.TrimSuffix(queryTTFT, ";")+" ORDER BY route FORMAT TSV")
	if ttft != "anthropic\t300\nopenai\t955" {
		t.Errorf("TTFT p95 = %q", ttft)
	}
	// Verbatim too (the semicolon is accepted by the HTTP interface).
	if _, err := chQuery(chURL, db, queryTTFT); err != nil {
		t.Errorf("verbatim TTFT query: %v", err)
	}

	tokens := mustQuery(t, chURL, db, strings.TrimSuffix(queryTokens, ";")+" ORDER BY tenant_id FORMAT TSV")
	if now.Add(-20*time.Minute).Day() != now.Day() {
		t.Skip("too close to midnight for the today() query")
	}
	// t1: ten rows of 10/20 plus the 20-minute-old 1/1; t2: the NULL row
	// counts nothing, two rows of 5/7.
	if tokens != "t1\t101\t201\nt2\t10\t14" {
		t.Errorf("tokens by tenant = %q", tokens)
	}

	one := mustQuery(t, chURL, db, strings.Replace(queryRequest, "'xxx'", "'"+id+"'", 1))
	wantOne := id + "\t" + string(last.RequestBody) + "\t['" + strings.ReplaceAll(string(last.Chunks.Chunk(0)), "\n", "\\n") + "','" + strings.ReplaceAll(string(last.Chunks.Chunk(1)), "\n", "\\n") + "']"
	if one != wantOne {
		t.Errorf("request by id =\n%q\nwant\n%q", one, wantOne)
	}
	if _, err := chQuery(chURL, db, queryRequest); err != nil {
		t.Errorf("verbatim request query: %v", err)
	}
}
