package app

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// soakDuration is SOAK_DURATION when set, 2m under make chaos (CHAOS_LONG),
// and 20s in the default make test run so CI stays fast.
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION=%q: %v", v, err)
		}
		return d
	}
	if chaosLong() {
		return 2 * time.Minute
	}
	return 20 * time.Second
}

// TestChaosSoak runs mixed traffic (OpenAI-style SSE, Anthropic SSE, raw
// audio, upstream errors, refused keys) at a steady 40 requests a second
// with ClickHouse and Redis on, sampling the process's RSS, goroutines and
// open file descriptors every 10s (every minute from 10m on). Tolerances,
// last sample against the first (taken after 10s of warm-up, both after a
// GC, with the harness's row sink emptied, since it keeps every row): Go
// heap +32 MiB, RSS +64 MiB (without -race only: see soakLeak),
// goroutines +50, fds +50; no unexpected status; rows in ClickHouse equal
// requests sent.
func TestChaosSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak")
	}
	d := soakDuration(t)
	every := 10 * time.Second
	if d >= 10*time.Minute {
		every = time.Minute
	}
	url := servicetest.ClickHouse(t)
	redisAddr := servicetest.Redis(t)
	db := testDatabase(t, url)
	mutate, _ := withLimits(redisAddr, 1000000, 1000000)
	r := startRelayWith(t, "", func(c *Config) {
		withClickHouse(url, db)(c)
		c.Storage.ClickHouse.FlushInterval = time.Second
		mutate(c)
	})
	type kind struct {
		path, body string
		hdr        map[string]string
		status     int
	}
	kinds := []kind{
		{"/v1/chat/completions", `{"model":"gpt-soak","stream":true,"stream_options":{"include_usage":true}}`, map[string]string{mockllm.HeaderChunks: "20", mockllm.HeaderDelayMs: "5"}, 200},
		{"/v1/messages", `{"model":"claude-soak","stream":true}`, map[string]string{mockllm.HeaderChunks: "20", mockllm.HeaderDelayMs: "5"}, 200},
		{"/v1/audio/speech", `{"model":"tts-1","input":"soak"}`, map[string]string{mockllm.HeaderChunks: "8"}, 200},
		{"/v1/chat/completions", `{"model":"m","stream":true}`, map[string]string{mockllm.HeaderStatus: "500"}, 500},
		{"/v1/chat/completions", `{}`, map[string]string{"Authorization": "Bearer sk-not-a-key"}, 401},
	}
	const rate = 40 // requests per second
	var sent, answered, expectedErr, unexpected atomic.Int64
	jobs := make(chan int, rate)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				k := kinds[i%len(kinds)]
				resp := r.post(t, k.path, k.body, k.hdr)
				body := readAll(t, resp)
				switch {
				case resp.StatusCode != k.status:
					unexpected.Add(1)
					t.Errorf("%s: status %d, want %d: %.200s", k.path, resp.StatusCode, k.status, body)
				case k.status == 200:
					answered.Add(1)
				default:
					answered.Add(1)
					expectedErr.Add(1)
				}
			}
		}()
	}
	var samples []procSample
	var times []time.Duration
	sample := func(at time.Duration) {
		// The harness's in-memory sink keeps a copy of every row; empty it
		// so that the samples measure the relay, not the test.
		r.rows.mu.Lock()
		r.rows.rows = nil
		r.rows.mu.Unlock()
		runtime.GC() // after a collection: what the relay holds, not garbage
		s := sampleProc()
		samples = append(samples, s)
		times = append(times, at)
		line := "SOAK|" + at.Round(time.Second).String() + "|" + strconv.FormatInt(s.rssKB>>10, 10) + "|" + strconv.Itoa(s.goroutines) + "|" + strconv.Itoa(s.fds) +
			"|" + strconv.FormatInt(s.heapKB>>10, 10)
		t.Log(line)
		appendReport(t, line)
	}
	start := time.Now()
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	nextSample := every
	for i := 0; time.Since(start) < d; i++ {
		<-tick.C
		select {
		case jobs <- i:
			sent.Add(1)
		default:
			// Workers behind: the relay is slower than the offered rate;
			// count it, keep the rate steady rather than queue.
			unexpected.Add(1)
			t.Errorf("soak: workers behind at %v", time.Since(start))
		}
		if at := time.Since(start); at >= nextSample {
			sample(at)
			nextSample += every
		}
	}
	close(jobs)
	wg.Wait()
	sample(time.Since(start))
	store := r.app.store
	r.stop(t)
	st := store.Stats()
	got := chRows(t, url, db, int(sent.Load()))
	var stored int64
	for _, n := range got {
		stored += int64(n)
	}
	first, last := samples[0], samples[len(samples)-1]
	leak := soakLeak(first, last, raceDetector)
	if raceDetector {
		t.Logf("soak: RSS %+d MiB under the race detector, whose runtime keeps what it allocates: not asserted (heap %+d MiB is)",
			(last.rssKB-first.rssKB)>>10, (last.heapKB-first.heapKB)>>10)
	}
	if leak != "none" {
		t.Errorf("soak: %s (first %v, last %v)", leak, first, last)
	}
	if stored != sent.Load() || int64(len(got)) != sent.Load() {
		t.Errorf("soak: %d rows (%d distinct) in ClickHouse for %d requests; writer %+v", stored, len(got), sent.Load(), st)
	}
	var series []string
	for i, s := range samples {
		series = append(series, fmt.Sprintf("%v:%s", times[i].Round(time.Second), s))
	}
	t.Logf("soak %v at %d/s: sent %d, answered %d (%d expected errors), unexpected %d; series %s", d, rate, sent.Load(), answered.Load(),
		expectedErr.Load(), unexpected.Load(), strings.Join(series, ", "))
	chaosResult{scenario: "soak/" + d.String(), sent: sent.Load(), answered: answered.Load(), expected: expectedErr.Load(),
		unexpect: unexpected.Load() + sent.Load() - stored, stored: stored, spooled: st.RowsSpooled, dropped: st.RowsDropped, leaks: leak}.emit(t)
}

// soakLeak compares the soak's last sample with its first against the
// tolerances of TestChaosSoak: "none", or what grew past them. RSS counts
// only without the race detector (race): under it RSS also holds the race
// runtime's shadow and metadata, which grow with the traffic seen and are
// never returned (go.dev/issue/37233: about 6 MiB a minute at the soak's
// rate, past +64 MiB after 11 minutes); the Go heap, goroutines and file
// descriptors are the relay's either way.
func soakLeak(first, last procSample, race bool) string {
	switch {
	case last.heapKB-first.heapKB > 32<<10:
		return fmt.Sprintf("heap +%dMiB", (last.heapKB-first.heapKB)>>10)
	case !race && last.rssKB-first.rssKB > 64<<10:
		return fmt.Sprintf("rss +%dMiB", (last.rssKB-first.rssKB)>>10)
	case last.goroutines-first.goroutines > 50:
		return fmt.Sprintf("goroutines +%d", last.goroutines-first.goroutines)
	case last.fds-first.fds > 50:
		return fmt.Sprintf("fds +%d", last.fds-first.fds)
	}
	return "none"
}
