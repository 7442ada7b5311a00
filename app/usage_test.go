package app

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// replayed is a recorded stream of usage/testdata: its writes and when
// each is due, in milliseconds after the request arrived.
type replayed struct {
	chunks [][]byte
	atMS   []int
}

func loadReplay(t *testing.T, name string) replayed {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "usage", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var r replayed
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i+1], b[i+1:]
		} else {
			b = nil
		}
		if ms, ok := bytes.CutPrefix(line, []byte("#at ")); ok {
			n, err := strconv.Atoi(string(bytes.TrimSpace(ms)))
			if err != nil {
				t.Fatalf("%s: marker %q", name, line)
			}
			r.chunks, r.atMS = append(r.chunks, nil), append(r.atMS, n)
			continue
		}
		r.chunks[len(r.chunks)-1] = append(r.chunks[len(r.chunks)-1], line...)
	}
	return r
}

// replayServer plays the stream named by the X-Replay header at its
// recorded pace (times halved), one write and flush per recorded read, and
// notes when each write went out.
type replayServer struct {
	streams map[string]replayed
	mu      sync.Mutex
	sent    map[string][]time.Duration // by X-Replay-Id
}

func (s *replayServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st, ok := s.streams[r.Header.Get("X-Replay")]
	if !ok {
		http.Error(w, "unknown X-Replay", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	if strings.HasSuffix(r.Header.Get("X-Replay"), ".ndjson") {
		w.Header().Set("Content-Type", "application/x-ndjson") // Ollama's native API
	}
	w.WriteHeader(http.StatusOK)
	var sent []time.Duration
	for i, c := range st.chunks {
		time.Sleep(time.Until(start.Add(time.Duration(st.atMS[i]) * time.Millisecond / 2)))
		sent = append(sent, time.Since(start))
		if _, err := w.Write(c); err != nil {
			return
		}
		w.(http.Flusher).Flush()
	}
	s.mu.Lock()
	s.sent[r.Header.Get("X-Replay-Id")] = sent
	s.mu.Unlock()
}

// TestTokensAndTTFTPerAPI: a stream of each API, relayed through a route
// with full capture, one with capture: meta and one whose capture stops at
// max_capture_bytes, gets its first-token time from the first content
// event and its token counts in every case, in the rows ClickHouse stores.
// A meta route's tokens are charged to the tenant's token budget.
func TestTokensAndTTFTPerAPI(t *testing.T) {
	tests := []struct {
		file, path string
		firstMS    int // recorded time of the read with the first content
		in, out    int64
	}{
		{"openai_chat.sse", "/v1/chat/completions", 310, 14, 5},
		{"vllm_reasoning.sse", "/v1/chat/completions", 180, 18, 103},
		{"responses.sse", "/v1/responses", 400, 21, 9},
		{"responses_reasoning_tool.sse", "/v1/responses", 720, 75, 152},
		{"responses_function_call.sse", "/v1/responses", 505, 64, 18},
		{"anthropic.sse", "/v1/messages", 410, 472, 12},
		{"anthropic_cache.sse", "/v1/messages", 410, 472 + 128 + 2048, 12}, // prompt cache writes and reads
		{"anthropic_thinking_tool.sse", "/v1/messages", 520, 391, 89},
		{"gemini.sse", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", 520, 9, 19},
		{"gemini_thinking.sse", "/v1beta/models/gemini-2.5-flash:streamGenerateContent", 1400, 12, 148},
		{"ollama_chat.ndjson", "/api/chat", 240, 18, 47},
		{"ollama_generate.ndjson", "/api/generate", 205, 31, 12},
	}
	srv := &replayServer{streams: map[string]replayed{}, sent: map[string][]time.Duration{}}
	for _, tt := range tests {
		srv.streams[tt.file] = loadReplay(t, tt.file)
	}
	r, url, db := replayRelay(t, srv, 600)

	all := sendReplayRoutes(t, len(tests), func(i int, prefix, replayID string) string {
		tt := tests[i]
		resp := r.post(t, prefix+tt.path, `{"model":"m-`+tt.file+`","stream":true}`, map[string]string{"X-Replay": tt.file, "X-Replay-Id": replayID})
		body := readAll(t, resp)
		if resp.StatusCode != 200 || !strings.Contains(body, string(srv.streams[tt.file].chunks[0])) {
			t.Errorf("%s%s: status %d", prefix, tt.path, resp.StatusCode)
		}
		return resp.Header.Get("X-Request-Id")
	})
	// The record as the relay finished it (TTFT in nanoseconds).
	var worst time.Duration
	worstByFile := map[string]time.Duration{}
	for _, s := range all {
		tt := tests[s.test]
		st := srv.streams[tt.file]
		first := -1
		for i, ms := range st.atMS {
			if ms == tt.firstMS {
				first = i
			}
		}
		row := r.rows.wait(t, s.id)
		if row.TokensIn != tt.in || row.TokensOut != tt.out {
			t.Errorf("%s %s: tokens %d/%d, want %d/%d", s.route, tt.file, row.TokensIn, row.TokensOut, tt.in, tt.out)
		}
		srv.mu.Lock()
		at := srv.sent[s.replayID]
		srv.mu.Unlock()
		// The relay's clock starts before the upstream's and reads a write
		// after it went out: TTFT is at least the first content's send
		// time (an earlier read would be earlier), and later only by the
		// relay hop.
		if len(at) <= first || row.TTFT == record.None {
			t.Errorf("%s %s: ttft %v, upstream sent %d reads", s.route, tt.file, row.TTFT, len(at))
			continue
		}
		d := row.TTFT - at[first]
		if d < 0 || d > 100*time.Millisecond {
			t.Errorf("%s %s: ttft %v, first content sent at %v (%v apart)", s.route, tt.file, row.TTFT, at[first], d)
		}
		if s.route == "replay-full" {
			// Exactly: the relayed read stamped as TTFT is the one that
			// completed the recorded first-content write.
			var before, upto []byte
			for k, c := range row.Chunks {
				if time.Duration(row.ChunkTimes[k])*time.Millisecond > row.TTFT {
					break
				}
				before = upto
				upto = append(upto, c...)
			}
			var want []byte
			for _, c := range st.chunks[:first+1] {
				want = append(want, c...)
			}
			if !bytes.HasPrefix(upto, want) && !bytes.HasPrefix(want, upto) || len(before) >= len(want) {
				t.Errorf("%s: TTFT read ends at byte %d (previous at %d); the first content write ends at byte %d", tt.file, len(upto), len(before), len(want))
			}
		}
		worst = max(worst, d)
		worstByFile[tt.file] = max(worstByFile[tt.file], d)
	}
	t.Logf("largest TTFT minus the upstream's send time of the first content: %v over %d streams", worst, len(all))
	for _, tt := range tests {
		t.Logf("  %-30s %v", tt.file, worstByFile[tt.file].Round(10*time.Microsecond))
	}

	// The stored rows.
	r.stop(t)
	got := servicetest.Query(t, url, db, "SELECT request_id, route, ttft_ms, tokens_in, tokens_out, truncated, length(response_chunks) AS n FROM stream_logs")
	byID := map[string]map[string]any{}
	for _, row := range got {
		byID[row["request_id"].(string)] = row
	}
	for _, s := range all {
		tt := tests[s.test]
		row := byID[s.id]
		if row == nil {
			t.Errorf("%s %s: no stored row", s.route, tt.file)
			continue
		}
		if fmt.Sprint(row["tokens_in"]) != fmt.Sprint(tt.in) || fmt.Sprint(row["tokens_out"]) != fmt.Sprint(tt.out) || row["ttft_ms"] == nil {
			t.Errorf("%s %s: stored tokens %v/%v ttft %v", s.route, tt.file, row["tokens_in"], row["tokens_out"], row["ttft_ms"])
		}
		wantTrunc := map[string]string{"replay-full": "0", "replay-meta": "0", "replay-small": "1"}[s.route]
		if fmt.Sprint(row["truncated"]) != wantTrunc || s.route == "replay-meta" && fmt.Sprint(row["n"]) != "0" || s.route == "replay-full" && fmt.Sprint(row["n"]) == "0" {
			t.Errorf("%s %s: truncated %v, %v chunks stored", s.route, tt.file, row["truncated"], row["n"])
		}
	}
}

// TestTokenBudgetMetaRoute: a stream on a capture: meta route is charged to
// the tenant's tokens_per_minute: the next request is refused once the
// budget is spent.
func TestTokenBudgetMetaRoute(t *testing.T) {
	srv := &replayServer{streams: map[string]replayed{"anthropic.sse": loadReplay(t, "anthropic.sse")}, sent: map[string][]time.Duration{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	limits, _ := withLimits("", 100, 100)
	r := startRelayYAML(t, func(yaml string) string {
		return strings.Replace(yaml, "routes:\n", `routes:
  - name: replay-meta
    path: /meta/*
    upstream: http://`+ln.Addr().String()+`
    auth_env: TEST_PROVIDER_KEY
    capture: meta
`, 1)
	}, func(c *Config) {
		limits(c)
		c.RateLimit.TokensPerMinute = 400 // one stream of 472+12 tokens spends it
	})
	hdr := map[string]string{"X-Replay": "anthropic.sse"}
	resp := r.post(t, "/meta/v1/messages", `{"model":"claude","stream":true}`, hdr)
	readAll(t, resp)
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if resp.StatusCode != 200 || row.TokensIn != 472 || row.TokensOut != 12 {
		t.Fatalf("first stream: status %d tokens %d/%d", resp.StatusCode, row.TokensIn, row.TokensOut)
	}
	resp = r.post(t, "/meta/v1/messages", `{"model":"claude","stream":true}`, hdr)
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after 484 tokens of a 400 budget: status %d %s", resp.StatusCode, body)
	}
}

// replayRelay starts an upstream serving srv's streams and a relay storing
// into a database of its own in the test ClickHouse, with three routes to
// that upstream: /full/* captures everything, /meta/* captures meta only,
// /small/* cuts its capture at smallCapture bytes. It returns the relay, the
// ClickHouse URL and the database.
func replayRelay(t *testing.T, srv *replayServer, smallCapture int) (*relay, string, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	up := "http://" + ln.Addr().String()
	url := servicetest.ClickHouse(t)
	db := testDatabase(t, url)
	routes := func(yaml string) string {
		return strings.Replace(yaml, "routes:\n", `routes:
  - name: replay-full
    path: /full/*
    upstream: `+up+`
    auth_env: TEST_PROVIDER_KEY
  - name: replay-meta
    path: /meta/*
    upstream: `+up+`
    auth_env: TEST_PROVIDER_KEY
    capture: meta
  - name: replay-small
    path: /small/*
    upstream: `+up+`
    auth_env: TEST_PROVIDER_KEY
    max_capture_bytes: `+strconv.Itoa(smallCapture)+`
`, 1)
	}
	return startRelayYAML(t, routes, withClickHouse(url, db)), url, db
}

// replaySent is one request sent through a replayRelay: its X-Request-Id,
// its X-Replay-Id, its test case and the route it went to.
type replaySent struct {
	id, replayID string
	test         int
	route        string
}

// sendReplayRoutes sends test case i of n to each of replayRelay's three
// routes (/full, /meta, /small), all at once, with post, which returns the
// answer's X-Request-Id; the X-Replay-Id it is to send is i and the route's
// prefix. It stops the test when a request failed.
func sendReplayRoutes(t *testing.T, n int, post func(i int, prefix, replayID string) string) []replaySent {
	t.Helper()
	var mu sync.Mutex
	var all []replaySent
	var wg sync.WaitGroup
	for i := range n {
		for _, prefix := range []string{"/full", "/meta", "/small"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rid := fmt.Sprint(i, prefix)
				id := post(i, prefix, rid)
				mu.Lock()
				all = append(all, replaySent{id, rid, i, "replay" + strings.Replace(prefix, "/", "-", 1)})
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return all
}
