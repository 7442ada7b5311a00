package app

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// readmeSQL returns the ```sql blocks of the README, in order.
func readmeSQL(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		out = append(out, strings.TrimSpace(m[1]))
	}
	return out
}

// TestReadmeSQL runs every SQL example of the README against the real
// ClickHouse after known traffic through the relay, and checks the numbers
// of the product description's three queries.
func TestReadmeSQL(t *testing.T) {
	url := servicetest.ClickHouse(t)
	db := testDatabase(t, url)
	r := startRelayWith(t, "", withClickHouse(url, db))
	var lastID, lastReq, lastBody string
	for i := 0; i < 5; i++ {
		lastReq = fmt.Sprintf(`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"n":%d}`, i)
		resp := r.post(t, "/v1/chat/completions", lastReq, map[string]string{mockllm.HeaderChunks: "4", mockllm.HeaderDelayMs: "10"})
		lastBody = readAll(t, resp)
		lastID = resp.Header.Get("X-Request-Id")
	}
	for i := 0; i < 3; i++ {
		readAll(t, r.post(t, "/v1/messages", `{"model":"claude","stream":true}`, map[string]string{mockllm.HeaderChunks: "3"}))
	}
	for i := 0; i < 2; i++ {
		readAll(t, r.post(t, "/v1/chat/completions", `{}`, map[string]string{"Authorization": "Bearer nope"}))
	}
	r.stop(t)
	var wantIn, wantOut int64
	for _, row := range r.rows.rows {
		if row.Tenant == "test-tenant" && row.TokensIn >= 0 {
			wantIn += row.TokensIn
			wantOut += row.TokensOut
		}
	}

	// A row of an earlier day, which no "today" query may count: on 18.16
	// a DateTime compared with today() (a Date) compares seconds with
	// days, and every row ever stored passed "created_at > today()".
	servicetest.Exec(t, url, "INSERT INTO "+db+".stream_logs (request_id, created_at, route, tenant_id, status, "+
		"tokens_in, tokens_out, ttft_ms, duration_ms) VALUES ('yesterday', toDateTime(today()) - 3600, 'openai', "+
		"'test-tenant', 200, 1000, 1000, 5, 10)")
	// A WebSocket session: its gaps are the user's pauses and its duration
	// the session's; no stall or speed query may take it for a stream.
	servicetest.Exec(t, url, "INSERT INTO "+db+".stream_logs (request_id, created_at, route, model, tenant_id, status, "+
		"tokens_in, tokens_out, ttft_ms, duration_ms, chunk_offsets_ms) VALUES ('ws-session', now(), 'realtime', 'ws-model', "+
		"'ws-tenant', 101, NULL, 200, 400, 9000, [500, 900, 8000, 8010])")

	blocks := readmeSQL(t)
	if len(blocks) < 3 {
		t.Fatalf("README has %d sql blocks", len(blocks))
	}
	for i, q := range blocks {
		q = strings.TrimSuffix(strings.ReplaceAll(q, "'xxx'", "'"+lastID+"'"), ";")
		rows := servicetest.Query(t, url, db, q)
		switch i {
		case 0: // TTFT p95 by route
			routes := map[string]bool{}
			for _, row := range rows {
				routes[fmt.Sprint(row["route"])] = true
				if row["p95_ttft"] == nil {
					t.Errorf("p95 is NULL for %v", row["route"])
				}
			}
			if !routes["openai"] || !routes["anthropic"] {
				t.Errorf("TTFT p95 routes: %v", rows)
			}
		case 1: // tokens by tenant
			found := false
			for _, row := range rows {
				if row["tenant_id"] == "test-tenant" {
					found = true
					if fmt.Sprint(row["total_in"]) != fmt.Sprint(wantIn) || fmt.Sprint(row["total_out"]) != fmt.Sprint(wantOut) {
						t.Errorf("tokens %v/%v, want %d/%d", row["total_in"], row["total_out"], wantIn, wantOut)
					}
				}
			}
			if !found || wantOut != 5*4+3*3 {
				t.Errorf("tenant rows %v; output tokens sent %d", rows, wantOut)
			}
		case 2: // one request, whole
			if len(rows) != 1 || rows[0]["request_body"] != lastReq {
				t.Fatalf("request lookup: %v", rows)
			}
			var b strings.Builder
			for _, c := range rows[0]["response_chunks"].([]any) {
				b.WriteString(c.(string))
			}
			if b.String() != lastBody {
				t.Errorf("stored chunks differ from the stream the client got")
			}
		default:
			if strings.Contains(q, "-- Stalls") || strings.Contains(q, "-- Output speed") {
				for _, row := range rows {
					if row["request_id"] == "ws-session" || row["model"] == "ws-model" {
						t.Errorf("README query %d takes a WebSocket session for a stream: %v", i, row)
					}
				}
			}
			if strings.Contains(q, "error_type") && strings.Contains(q, "GROUP BY route, error_type") {
				if len(rows) != 1 || fmt.Sprint(rows[0]["requests"]) != "2" {
					t.Errorf("errors query: %v", rows)
				}
			}
			t.Logf("README query %d: %d rows", i, len(rows))
		}
	}
}
