package app

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

func testDatabase(t *testing.T, url string) string {
	t.Helper()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	db := "relay_e2e_" + hex.EncodeToString(b)
	t.Cleanup(func() { servicetest.Exec(t, url, "DROP DATABASE IF EXISTS "+db) })
	return db
}

func withClickHouse(url, db string) func(*Config) {
	return func(c *Config) {
		c.Storage.ClickHouse.URL = url
		c.Storage.ClickHouse.Database = db
		c.Storage.ClickHouse.FlushInterval = 200 * time.Millisecond
	}
}

// TestRowsInClickHouse sends one request of each kind through the relay and
// reads the rows back from the real ClickHouse, field by field.
func TestRowsInClickHouse(t *testing.T) {
	url := servicetest.ClickHouse(t)
	db := testDatabase(t, url)
	r := startRelayWith(t, "", func(c *Config) {
		withClickHouse(url, db)(c)
		c.Routes[0].InjectIncludeUsage = true
		c.Routes[0].MaxCaptureBytes = 1 << 20
		c.Routes[1].MaxCaptureBytes = 600 // anthropic: truncated capture
	})
	type sent struct{ id, body string }
	var ids []sent
	send := func(path, body string, hdr map[string]string) (string, string) {
		resp := r.post(t, path, body, hdr)
		b := readAll(t, resp)
		id := resp.Header.Get("X-Request-Id")
		ids = append(ids, sent{id, b})
		return id, b
	}
	sseID, sseBody := send("/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hello"}]}`,
		map[string]string{mockllm.HeaderChunks: "6", "User-Agent": "e2e-test/1.0"})
	antID, antBody := send("/v1/messages", `{"model":"claude-x","stream":true}`, map[string]string{mockllm.HeaderChunks: "30"})
	rawID, _ := send("/v1/audio/speech", `{"model":"tts-1","input":"hi"}`, map[string]string{mockllm.HeaderChunks: "3"})
	badID, _ := send("/v1/chat/completions", `{}`, map[string]string{"Authorization": "Bearer sk-wrong-secret"})
	upID, _ := send("/v1/chat/completions", `{"model":"m","stream":true}`, map[string]string{mockllm.HeaderStatus: "500"})

	r.stop(t) // Close flushes the last block
	rows := servicetest.Query(t, url, db, "SELECT request_id, route, tenant_id, key_id, model, method, path, upstream, status, error_type, ttfb_ms, ttft_ms, duration_ms, bytes_in, bytes_out, tokens_in, tokens_out, request_headers, response_headers, request_body, response_chunks, chunk_offsets_ms, truncated, user_agent FROM stream_logs")
	byID := map[string]map[string]any{}
	for _, row := range rows {
		byID[row["request_id"].(string)] = row
	}
	if len(rows) != len(ids) || len(byID) != len(ids) {
		t.Fatalf("%d rows (%d distinct) for %d requests", len(rows), len(byID), len(ids))
	}
	str := func(row map[string]any, k string) string { return fmt.Sprint(row[k]) }
	chunks := func(row map[string]any) string {
		var b strings.Builder
		for _, c := range row["response_chunks"].([]any) {
			b.WriteString(c.(string))
		}
		return b.String()
	}

	sse := byID[sseID]
	for k, want := range map[string]string{"route": "openai", "tenant_id": "test-tenant", "model": "gpt-4o", "method": "POST",
		"path": "/v1/chat/completions", "status": "200", "error_type": "", "tokens_out": "6", "truncated": "0", "user_agent": "e2e-test/1.0"} {
		if got := str(sse, k); got != want {
			t.Errorf("sse %s = %q, want %q", k, got, want)
		}
	}
	if chunks(sse) != sseBody {
		t.Errorf("sse chunks differ from the body the client received")
	}
	if sse["ttft_ms"] == nil || sse["ttfb_ms"] == nil || sse["tokens_in"] == nil {
		t.Errorf("sse nulls: ttft %v ttfb %v tokens_in %v", sse["ttft_ms"], sse["ttfb_ms"], sse["tokens_in"])
	}
	if len(sse["chunk_offsets_ms"].([]any)) != len(sse["response_chunks"].([]any)) {
		t.Errorf("chunk offsets and chunks differ in length")
	}
	// The client did not ask for usage: the mock sent it because the relay
	// injected stream_options.include_usage; the row keeps the client's body.
	if !strings.Contains(sseBody, `"usage"`) || strings.Contains(str(sse, "request_body"), "include_usage") {
		t.Errorf("include_usage: stream has usage %v, stored body %s", strings.Contains(sseBody, `"usage"`), str(sse, "request_body"))
	}
	if str(sse, "key_id") == "" || strings.Contains(str(sse, "request_headers"), relayKey) || strings.Contains(str(sse, "response_headers"), providerKey) {
		t.Errorf("key_id empty or a key stored")
	}

	ant := byID[antID]
	if str(ant, "truncated") != "1" || len(chunks(ant)) > 600 || !strings.HasPrefix(antBody, chunks(ant)) || !strings.Contains(antBody, "message_stop") {
		t.Errorf("anthropic truncation: flag %v, %d bytes kept, stream intact %v", ant["truncated"], len(chunks(ant)), strings.Contains(antBody, "message_stop"))
	}
	raw := byID[rawID]
	if str(raw, "route") != "tts" || len(raw["response_chunks"].([]any)) != 0 || str(raw, "request_body") != "" || raw["ttft_ms"] == nil || str(raw, "bytes_out") != fmt.Sprint(3*mockllm.DefaultChunkBytes) {
		t.Errorf("raw row: %v", raw)
	}
	bad := byID[badID]
	if str(bad, "status") != "401" || str(bad, "error_type") != record.ErrUnauthorized || bad["ttfb_ms"] != nil || bad["tokens_in"] != nil {
		t.Errorf("401 row: status %v type %v ttfb %v", bad["status"], bad["error_type"], bad["ttfb_ms"])
	}
	if strings.Contains(str(bad, "request_headers"), "sk-wrong-secret") {
		t.Errorf("a presented key reached the row")
	}
	up := byID[upID]
	if str(up, "status") != "500" || str(up, "error_type") != record.ErrUpstreamStatus {
		t.Errorf("upstream 500 row: %v %v", up["status"], up["error_type"])
	}
	// The product README's queries, verbatim.
	for _, q := range []string{
		"SELECT\n    route,\n    quantile(0.95)(ttft_ms) as p95_ttft\nFROM stream_logs\nWHERE created_at > now() - INTERVAL 10 MINUTE\n  AND ttft_ms IS NOT NULL\nGROUP BY route",
		"SELECT\n    tenant_id,\n    sum(tokens_in) as total_in,\n    sum(tokens_out) as total_out\nFROM stream_logs\nWHERE created_at > today()\nGROUP BY tenant_id",
		"SELECT\n    request_id,\n    request_body,\n    response_chunks\nFROM stream_logs\nWHERE request_id = '" + sseID + "'",
	} {
		if got := servicetest.Query(t, url, db, q); len(got) == 0 {
			t.Errorf("product query returned nothing: %s", q)
		}
	}
}
