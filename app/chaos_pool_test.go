package app

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestChaosPoolUpstreamKilled: a route with two upstreams under load; one
// of them is killed (its listener and every connection closed) halfway.
// Requests in flight on it, and those sent to it before it is ejected, fail
// over to the other before their first byte: no client sees an error.
func TestChaosPoolUpstreamKilled(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	duration, workers := 2*time.Second, 8
	if chaosLong() {
		duration, workers = 10*time.Second, 32
	}
	a, baseA := mock(t, providerKey)
	b, baseB := mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: pool
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstreams:
      - {name: a, url: "`+baseA+`"}
      - {name: b, url: "`+baseB+`"}
`, "rate_limit: {disabled: true}"))

	var sent, ok, bad atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				if p.try("/v1/chat/completions", nil) == 200 {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		}()
	}
	time.Sleep(duration / 2)
	killedAt := sent.Load()
	_ = b.Close()
	time.Sleep(duration / 2)
	close(stop)
	wg.Wait()

	var servedB, failedOver int64
	for _, r := range p.sink.all() {
		if r.Upstream == baseB+"#b" {
			servedB++
		}
		if r.Status == 200 && len(r.RespHeaders) > 0 && strings.Contains(r.RespHeaders, `"x-relay-attempts":"b=`) {
			failedOver++
		}
	}
	t.Logf("sent %d (%d before the kill), ok %d, client errors %d; b served %d, %d failed over from b",
		sent.Load(), killedAt, ok.Load(), bad.Load(), servedB, failedOver)
	if bad.Load() != 0 {
		t.Errorf("%d client errors, want 0", bad.Load())
	}
	if servedB == 0 || failedOver == 0 {
		t.Errorf("b served %d, failovers %d: the kill did not hit traffic", servedB, failedOver)
	}
	if m := p.metric(`relay_upstream_healthy{route="pool",target="b"}`); m == "" || m[len(m)-1] != '0' {
		t.Errorf("b's health gauge: %q", m)
	}
	stored := int64(len(p.sink.all()))
	p.stop(t)
	_ = a.Close()
	lk := leaks(ignore)
	if lk != "none" {
		t.Error(lk)
	}
	sinkOnly(chaosResult{scenario: "pool/one-of-two-upstreams-killed", sent: sent.Load(), answered: ok.Load(),
		unexpect: bad.Load(), stored: stored, leaks: lk}).emit(t)
}
