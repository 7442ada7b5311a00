package app

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// TestLargeBodiesStoredWhole: request bodies large enough to go to the
// storage block by reference (record.TakeRequestBody), and small ones
// copied, sent at once over kept-alive connections so that body buffers
// pass from request to block and back to later requests, all reach the
// real ClickHouse byte for byte; one past the route's capture limit keeps
// its prefix, marked truncated.
func TestLargeBodiesStoredWhole(t *testing.T) {
	url := servicetest.ClickHouse(t)
	db := testDatabase(t, url)
	const captureLimit = 150_000
	r := startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "max_body_bytes: 65536", "max_body_bytes: 4194304", 1)
	}, func(c *Config) {
		withClickHouse(url, db)(c)
		c.Routes[0].MaxCaptureBytes = captureLimit
		c.Storage.ClickHouse.BatchRows = 5 // several blocks, buffers given back between them
	})

	sizes := []int{record.TakeMin, 5_000, 300_000, 90_000, 200, 3 * record.TakeMin, 120_000}
	const senders = 3
	var mu sync.Mutex
	sent := map[string]string{} // request id -> body
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i, size := range sizes {
				fill := fmt.Sprintf("sender %d request %d; ", g, i)
				head, tail := `{"model":"m","stream":true,"messages":[{"role":"user","content":"`, `"}]}`
				pad := strings.Repeat(fill, size/len(fill)+1)[:max(size-len(head)-len(tail), 0)]
				body := head + pad + tail
				resp, err := r.tryPost("/v1/chat/completions", body, map[string]string{"X-Mock-Chunks": "3"})
				if err != nil {
					t.Errorf("sender %d request %d: %v", g, i, err)
					return
				}
				readAll(t, resp)
				if resp.StatusCode != 200 {
					t.Errorf("sender %d request %d: status %d", g, i, resp.StatusCode)
				}
				mu.Lock()
				sent[resp.Header.Get("X-Request-Id")] = body
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	r.stop(t) // Close flushes the last block

	rows := servicetest.Query(t, url, db, "SELECT request_id, request_body, truncated, bytes_in FROM stream_logs")
	if len(rows) != len(sent) || len(sent) != senders*len(sizes) {
		t.Fatalf("%d rows for %d requests (%d sent)", len(rows), len(sent), senders*len(sizes))
	}
	taken := 0
	for _, row := range rows {
		id := fmt.Sprint(row["request_id"])
		body, ok := sent[id]
		if !ok {
			t.Fatalf("row for an unknown request %s", id)
		}
		want, trunc := body, "0"
		if len(body) > captureLimit {
			want, trunc = body[:captureLimit], "1"
		}
		if got := fmt.Sprint(row["request_body"]); got != want {
			t.Errorf("request %s: stored body of %d bytes differs from the %d sent (first diff at %d)", id, len(got), len(want), firstDiff(got, want))
		}
		if fmt.Sprint(row["truncated"]) != trunc || fmt.Sprint(row["bytes_in"]) != fmt.Sprint(len(body)) {
			t.Errorf("request %s: truncated %v bytes_in %v; want %s, %d", id, row["truncated"], row["bytes_in"], trunc, len(body))
		}
		if len(want) >= record.TakeMin {
			taken++
		}
	}
	if taken < senders*4 {
		t.Fatalf("only %d bodies large enough to be taken", taken)
	}
}

// firstDiff is the first byte offset where a and b differ.
func firstDiff(a, b string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
