package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// Overload: more captured bytes than storage.max_buffer_bytes allows. The
// relay degrades capture (rows meta only, truncated_reason storage_budget),
// then refuses new requests with 503 storage_overloaded and Retry-After;
// every request it answered has its row, and memory stays bounded.

// overloadResult is what a client saw of one request.
type overloadResult struct {
	status     int
	id         string
	retryAfter string
	errType    string
	err        error
}

// overloadClient sends one request and reads the answer, pausing pause
// between reads of up to 16 KiB (a slow reader when pause > 0).
func overloadClient(ctx context.Context, c *http.Client, base, path, body string, hdr map[string]string, pause time.Duration) overloadResult {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		return overloadResult{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+relayKey)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return overloadResult{err: err}
	}
	defer resp.Body.Close()
	res := overloadResult{status: resp.StatusCode, id: resp.Header.Get("X-Request-Id"), retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct{ Type string } `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		_ = json.Unmarshal(b, &e)
		res.errType = e.Error.Type
		return res
	}
	buf := make([]byte, 16<<10)
	for {
		_, err := resp.Body.Read(buf)
		if err != nil {
			if err != io.EOF {
				res.err = err
			}
			return res
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

// overloadTally sums the results: answered (any status but 503
// storage_overloaded) and refused ones; it checks the refusals' shape.
type overloadTally struct {
	answered map[string]bool
	refused  int64
	failed   int64 // no answer at all (transport error)
	bad      []string
}

func tally(results []overloadResult) overloadTally {
	t := overloadTally{answered: map[string]bool{}}
	for _, r := range results {
		switch {
		case r.status == 0:
			t.failed++
			t.bad = append(t.bad, "no answer: "+fmt.Sprint(r.err))
		case r.status == http.StatusServiceUnavailable && r.errType == record.ErrStorageOverloaded:
			t.refused++
			if r.retryAfter == "" || r.id == "" {
				t.bad = append(t.bad, "503 storage_overloaded without Retry-After or X-Request-Id")
			}
		default:
			t.answered[r.id] = true
		}
	}
	return t
}

// spoolRows decodes every spool file under dir into rows by request id.
func spoolRows(t *testing.T, dir string) map[string]chlog.Row {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]chlog.Row{}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".native") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		rs, err := chlog.DecodeRows(data)
		if err != nil {
			t.Fatalf("spool file %s: %v", e.Name(), err)
		}
		for _, r := range rs {
			rows[r.RequestID] = r
		}
	}
	return rows
}

// checkRows counts answered requests without a row and rows degraded by
// the storage budget.
func checkRows(answered map[string]bool, rows map[string]chlog.Row) (missing, degraded int64) {
	for id := range answered {
		if _, ok := rows[id]; !ok {
			missing++
		}
	}
	for _, r := range rows {
		if r.TruncatedReason == record.TruncStorageBudget {
			degraded++
		}
	}
	return missing, degraded
}

// TestOverloadDegradeAndRefuse: with a 1 MiB budget, 60 concurrent streams
// of 640 KiB each (full capture) cannot all be captured, nor even all be
// held as rows: some rows are meta only (truncated_reason storage_budget),
// some requests are refused with 503 storage_overloaded and Retry-After,
// and every answered request has its row in the spool.
func TestOverloadDegradeAndRefuse(t *testing.T) {
	r := startRelayWith(t, "", func(c *Config) {
		c.Storage.MaxBufferBytes = 1 << 20
		c.Routes[2].Capture = "full" // tts: raw audio, captured
	})
	spoolDir := r.app.cfg.Storage.SpoolDir
	const streams = 60
	hdr := map[string]string{mockllm.HeaderChunks: "40", mockllm.HeaderChunkBytes: "16384", mockllm.HeaderDelayMs: "40"}
	c := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxConnsPerHost: 0}}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	results := make([]overloadResult, streams)
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = overloadClient(ctx, c, r.base, "/v1/audio/speech", `{"model":"tts-1","input":"hi"}`, hdr, 0)
		}()
	}
	wg.Wait()
	c.CloseIdleConnections()
	st := r.app.store.Stats()
	r.stop(t)
	tl := tally(results)
	rows := spoolRows(t, spoolDir)
	missing, degraded := checkRows(tl.answered, rows)
	t.Logf("answered %d, refused %d, rows %d (meta only by budget %d), stats %+v", len(tl.answered), tl.refused, len(rows), degraded, st)
	if len(tl.bad) > 0 || tl.failed > 0 {
		t.Errorf("bad answers: %v", tl.bad)
	}
	if missing != 0 {
		t.Errorf("%d answered requests have no row", missing)
	}
	if tl.refused == 0 || degraded == 0 || len(tl.answered) == 0 {
		t.Errorf("want some refused (%d), some degraded (%d), some answered (%d)", tl.refused, degraded, len(tl.answered))
	}
	if st.Refused != tl.refused || st.RowsDropped != 0 {
		t.Errorf("stats %+v: refused %d by the clients' count", st, tl.refused)
	}
	// The in-memory sink sees every request, refusals too (for metrics).
	if n := r.rows.count(func(rw row) bool { return rw.ErrorType == record.ErrStorageOverloaded && rw.Status == 503 }); n != tl.refused {
		t.Errorf("%d storage_overloaded records reached the sinks, want %d", n, tl.refused)
	}
}

// overloadProc is a relay process (built without -race, so that its RSS is
// the relay's own) with a full-capture raw route and a spool-only store.
type overloadProc struct {
	*relayProc
	spool    string
	metrics  string   // base URL of metrics.addr, with /debug/pprof/
	memStats []string // the runtime's view at the last gc
}

func startOverloadProc(t *testing.T, budget int64) *overloadProc {
	t.Helper()
	bin := relayBinary(t)
	mock, mockBase, err := mockllm.Listen("127.0.0.1:0", mockllm.Options{RequireKey: providerKey, StallTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })
	dir := t.TempDir()
	port := servicetest.FreePort(t)
	metricsAddr := servicetest.FreeAddr(t)
	cfg := fmt.Sprintf(`server:
  host: 127.0.0.1
  port: %d
  shutdown_grace: 20s
auth:
  keys:
    - key: %s
      tenant: test-tenant
routes:
  - name: openai
    path: /v1/chat/completions
    upstream: %s
    auth_env: TEST_PROVIDER_KEY
  - name: tts
    path: /v1/audio/speech
    upstream: %s
    auth_env: TEST_PROVIDER_KEY
    kind: raw
    capture: full
storage:
  spool_dir: %s
  max_buffer_bytes: %d
rate_limit:
  disabled: true
log:
  level: warn
metrics:
  addr: %s
  pprof: true
`, port, relayKey, mockBase, mockBase, filepath.Join(dir, "spool"), budget, metricsAddr)
	path := filepath.Join(dir, "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	rp := runRelayProc(t, bin, path, port, "GOMEMLIMIT="+os.Getenv("OVERLOAD_GOMEMLIMIT"))
	return &overloadProc{relayProc: rp, spool: filepath.Join(dir, "spool"), metrics: "http://" + metricsAddr}
}

// rssMiB is the relay process's resident memory.
func (p *overloadProc) rssMiB() int64 { return rssKB(p.cmd.Process.Pid) >> 10 }

// sampleRSS records the process's peak RSS every 50ms, and its peak Go
// heap in use every 250ms (from /metrics), until stop is closed.
func (p *overloadProc) sampleRSS(stop <-chan struct{}) (rss, heap *atomic.Int64) {
	rss, heap = new(atomic.Int64), new(atomic.Int64)
	go func() {
		for i := 0; ; i++ {
			if v := p.rssMiB(); v > rss.Load() {
				rss.Store(v)
			}
			if i%5 == 0 {
				if v := p.heapMiB(); v > heap.Load() {
					heap.Store(v)
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return rss, heap
}

// heapMiB reads go_memstats_heap_inuse_bytes from the relay's /metrics.
func (p *overloadProc) heapMiB() int64 {
	resp, err := http.Get(p.metrics + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "go_memstats_heap_inuse_bytes "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f) >> 20
		}
	}
	return -1
}

// gc makes the relay collect garbage now (pprof's heap profile with gc=1)
// and returns its heap in use (MiB): an idle relay allocates too little to
// start a collection by itself for minutes.
func (p *overloadProc) gc() int64 {
	heap := int64(-1)
	for range 2 { // pooled records survive one collection (sync.Pool's victim cache)
		resp, err := http.Get(p.metrics + "/debug/pprof/heap?gc=1&debug=1")
		if err != nil {
			return -1
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		p.memStats = p.memStats[:0]
		for _, l := range strings.Split(string(b), "\n") {
			for _, k := range []string{"HeapInuse", "HeapIdle", "HeapReleased", "StackInuse", "Sys"} {
				if v, ok := strings.CutPrefix(l, "# "+k+" = "); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					p.memStats = append(p.memStats, k+"="+strconv.FormatInt(n>>20, 10)+"MiB")
					if k == "HeapInuse" {
						heap = n >> 20
					}
				}
			}
		}
	}
	return heap
}

// settleRSS waits up to d for the relay's RSS to fall to at most want MiB,
// making it collect garbage every second (the writer lets go of its reuse
// buffers after three idle flush intervals; the runtime returns freed memory
// to the OS in the background); it returns the last RSS and heap in use.
func (p *overloadProc) settleRSS(want int64, d time.Duration) (rss, heap int64) {
	deadline := time.Now().Add(d)
	for {
		heap = p.gc()
		rss = p.rssMiB()
		if rss <= want || time.Now().After(deadline) {
			return rss, heap
		}
		time.Sleep(time.Second)
	}
}

// stopAndCount stops the relay (SIGTERM: it flushes into the spool) and
// returns the spooled rows.
func (p *overloadProc) stopAndCount(t *testing.T) map[string]chlog.Row {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 40*time.Second); code != 0 {
		t.Errorf("relay exit code %d\n%s", code, tail(p.stderr.String(), 2000))
	}
	return spoolRows(t, p.spool)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// perStreamKiB is the documented memory of one open stream outside the
// storage budget: the relay's copy buffer (16 KiB), the upstream
// connection's read buffer (16 KiB), fasthttp's read and write buffers
// (8 KiB each), goroutine stacks and connection state (README:
// "Overload").
const perStreamKiB = 96

// overloadBound is the documented peak RSS (README "Overload"): idle, plus
// three times the budget (the budget counts live captured bytes; Go's
// collector lets freed capture buffers pile up to about as much again
// before it runs, and hands freed memory back to the OS in the
// background), plus the per-stream cost, plus 32 MiB of slack.
func overloadBound(idleMiB, budget int64, streams int) int64 {
	return idleMiB + 3*(budget>>20) + int64(streams)*perStreamKiB>>10 + 32
}

// TestChaosOverloadFastLargeStreams: many fast large streams (1 MiB of
// captured audio each) and small requests beside them, spool only, in a
// relay process with a 64 MiB budget. Every answered request has its row;
// peak RSS stays within the budget plus the per-stream cost; RSS returns
// near idle afterwards.
func TestChaosOverloadFastLargeStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	large, small, workers := 200, 30, 50
	if !chaosLong() {
		large, small, workers = 80, 20, 20
	}
	const budget = 64 << 20
	p := startOverloadProc(t, budget)
	time.Sleep(200 * time.Millisecond)
	idle := p.rssMiB()
	stop := make(chan struct{})
	peak, peakHeap := p.sampleRSS(stop)

	c := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: workers}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results := make([]overloadResult, large+small)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if i < large {
					results[i] = overloadClient(ctx, c, p.base, "/v1/audio/speech", `{"model":"tts-1","input":"hi"}`,
						map[string]string{mockllm.HeaderChunks: "64", mockllm.HeaderChunkBytes: "16384"}, 0)
				} else {
					results[i] = overloadClient(ctx, c, p.base, "/v1/chat/completions", `{"model":"m","stream":true}`, nil, 0)
				}
			}
		}()
	}
	for i := range large + small {
		jobs <- (i*7 + 3) % (large + small) // small requests spread among the large ones
	}
	close(jobs)
	wg.Wait()
	c.CloseIdleConnections()
	p.verdict(t, fmt.Sprintf("overload/fast-large-streams-%d", large), "fast large streams", results, stop,
		idle, budget, workers, peak, peakHeap, int64(large+small))
}

// TestChaosOverloadSlowReaders: 1,000 clients (100 by default) read large
// captured streams slowly, all at once, against a 64 MiB budget in a relay
// process. Capture degrades instead of growing with the readers; every
// answered request has its row; peak RSS stays within the budget plus the
// per-stream cost; RSS returns near idle afterwards.
func TestChaosOverloadSlowReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	readers := 1000
	if !chaosLong() {
		readers = 100
	}
	const budget = 64 << 20
	p := startOverloadProc(t, budget)
	time.Sleep(200 * time.Millisecond)
	idle := p.rssMiB()
	stop := make(chan struct{})
	peak, peakHeap := p.sampleRSS(stop)

	c := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 0}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	results := make([]overloadResult, readers)
	var wg sync.WaitGroup
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// 2 MiB of audio read 16 KiB every 20ms: about 2.5 s each.
			results[i] = overloadClient(ctx, c, p.base, "/v1/audio/speech", `{"model":"tts-1","input":"hi"}`,
				map[string]string{mockllm.HeaderChunks: "128", mockllm.HeaderChunkBytes: "16384"}, 20*time.Millisecond)
		}()
		if i%50 == 49 {
			time.Sleep(10 * time.Millisecond) // a ramp, not one SYN flood
		}
	}
	wg.Wait()
	c.CloseIdleConnections()
	p.verdict(t, "overload/slow-readers-"+strconv.Itoa(readers), "slow readers", results, stop,
		idle, budget, readers, peak, peakHeap, int64(readers))
}

// verdict waits for RSS to settle after an overload run, stops the relay,
// checks that every answered request has its row and that RSS stayed
// within overloadBound and came back near idle, and emits the chaos row.
func (p *overloadProc) verdict(t *testing.T, scenario, what string, results []overloadResult, stop chan struct{},
	idle, budget int64, streams int, peak, peakHeap *atomic.Int64, sent int64) {
	t.Helper()
	idleAfter, heapAfter := p.settleRSS(idle+32, 20*time.Second)
	close(stop)
	rows := p.stopAndCount(t)
	tl := tally(results)
	missing, degraded := checkRows(tl.answered, rows)
	bound := overloadBound(idle, budget, streams)
	t.Logf("relay runtime after the load: %v", p.memStats)
	t.Logf("%s: answered %d, refused %d, rows %d (meta only by budget %d); RSS idle %d MiB, peak %d MiB (bound %d; peak heap in use %d MiB), after %d MiB (heap in use %d MiB)",
		what, len(tl.answered), tl.refused, len(rows), degraded, idle, peak.Load(), bound, peakHeap.Load(), idleAfter, heapAfter)
	unexpected := missing + tl.failed
	if len(tl.bad) > 0 {
		t.Errorf("bad answers: %v", tl.bad[:min(len(tl.bad), 5)])
	}
	if missing != 0 {
		t.Errorf("%d answered requests have no row", missing)
	}
	if peak.Load() > bound {
		t.Errorf("peak RSS %d MiB over the bound %d MiB (idle %d + 3x budget + %d streams x %d KiB + 32)", peak.Load(), bound, idle, streams, perStreamKiB)
		unexpected++
	}
	if idleAfter > idle+32 {
		t.Errorf("RSS %d MiB after the load, idle was %d MiB", idleAfter, idle)
		unexpected++
	}
	chaosResult{scenario: fmt.Sprintf("%s(peak %dMiB)", scenario, peak.Load()), sent: sent,
		answered: int64(len(tl.answered)), expected: tl.refused, unexpect: unexpected, stored: int64(len(rows)), spooled: int64(len(rows))}.emit(t)
}
