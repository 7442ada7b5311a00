package app

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/quota"
	"github.com/stream-relay/stream-relay/record"
)

// withLimits turns rate limits on for the first key's tenant, renamed to a
// fresh tenant so runs against a shared Redis do not meet.
func withLimits(redisAddr string, perMinute, burst int) (func(*Config), string) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	tenant := "tenant-" + hex.EncodeToString(b)
	return func(c *Config) {
		c.Auth.Keys[0].Tenant = tenant
		c.Auth.Keys[0].Tenants = nil
		c.Storage.Redis.Addr = redisAddr
		c.RateLimit = RateLimitConfig{Default: perMinute, Burst: burst, OnRedisError: "local"}
	}, tenant
}

func TestRateLimitHeadersAndRefusal(t *testing.T) {
	for _, mode := range []string{"in-process", "redis"} {
		t.Run(mode, func(t *testing.T) {
			addr := ""
			if mode == "redis" {
				addr = servicetest.Redis(t)
			}
			mutate, tenant := withLimits(addr, 6, 3)
			r := startRelayWith(t, "", mutate)
			for i := 0; i < 3; i++ {
				resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderChunks: "1"})
				readAll(t, resp)
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: %d", i, resp.StatusCode)
				}
				if resp.Header.Get("X-RateLimit-Limit") != "3" || resp.Header.Get("X-RateLimit-Remaining") != strconv.Itoa(2-i) || resp.Header.Get("X-RateLimit-Reset") == "" {
					t.Errorf("request %d headers: limit %q remaining %q reset %q", i,
						resp.Header.Get("X-RateLimit-Limit"), resp.Header.Get("X-RateLimit-Remaining"), resp.Header.Get("X-RateLimit-Reset"))
				}
			}
			before := r.mock.Count()
			resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, nil)
			body := readAll(t, resp)
			if resp.StatusCode != 429 {
				t.Fatalf("4th request: %d %s", resp.StatusCode, body)
			}
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 10 {
				t.Errorf("Retry-After %q (6/min: one token every 10s)", resp.Header.Get("Retry-After"))
			}
			if resp.Header.Get("X-RateLimit-Remaining") != "0" {
				t.Errorf("remaining on refusal %q", resp.Header.Get("X-RateLimit-Remaining"))
			}
			var e struct {
				Error struct{ Type string } `json:"error"`
			}
			if json.Unmarshal([]byte(body), &e); e.Error.Type != record.ErrRateLimited {
				t.Errorf("body %s", body)
			}
			if r.mock.Count() != before {
				t.Error("a refused request reached the upstream")
			}
			row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
			if row.Status != 429 || row.ErrorType != record.ErrRateLimited || row.Tenant != tenant {
				t.Errorf("row %+v", row)
			}
		})
	}
}

// TestTwoRelaysShareOneBudget: two relay instances on one Redis admit one
// bucket's worth between them, not one each.
func TestTwoRelaysShareOneBudget(t *testing.T) {
	addr := servicetest.Redis(t)
	mutate, _ := withLimits(addr, 1, 5)
	a := startRelayWith(t, "", mutate)
	b := startRelayWith(t, "", mutate)
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for _, r := range []*relay{a, b, a, b} {
		wg.Add(1)
		go func(r *relay) {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderChunks: "1"})
				readAll(t, resp)
				switch resp.StatusCode {
				case 200:
					admitted.Add(1)
				case 429:
					refused.Add(1)
				default:
					t.Errorf("status %d", resp.StatusCode)
				}
			}
		}(r)
	}
	wg.Wait()
	if admitted.Load() != 5 || refused.Load() != 15 {
		t.Errorf("admitted %d refused %d, want 5 and 15 from one shared bucket of 5", admitted.Load(), refused.Load())
	}
}

// TestRedisKilledUnderLoad: with Redis killed and restarted while requests
// flow, no request fails, decisions fall back to the local bucket and return
// to Redis.
func TestRedisKilledUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	redis, addr := servicetest.OwnRedis(t)
	mutate, _ := withLimits(addr, 100000, 100000)
	r := startRelayWith(t, "", mutate)
	var ok, bad atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000 && !stop.Load(); i++ { // until stop: decisions must go on after the restart
				resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderChunks: "2"})
				readAll(t, resp)
				if resp.StatusCode == 200 {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		}()
	}
	time.Sleep(700 * time.Millisecond)
	redis.Kill()
	time.Sleep(1500 * time.Millisecond)
	redis.Start()
	waitFor(t, 10*time.Second, func() bool { return r.app.limiter.Stats().ToRedis >= 1 }, "limiter did not return to Redis after it restarted")
	time.Sleep(300 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	st := r.app.limiter.Stats()
	if bad.Load() != 0 {
		t.Errorf("%d requests failed during the Redis outage", bad.Load())
	}
	if st.Admitted[quota.SourceLocal] == 0 || st.Admitted[quota.SourceRedis] == 0 || st.ToFallback < 1 {
		t.Errorf("stats %+v: want local decisions during the outage and Redis ones around it", st)
	}
	t.Logf("served %d requests; decisions redis=%d local=%d; switches to fallback %d, back %d",
		ok.Load(), st.Admitted[quota.SourceRedis], st.Admitted[quota.SourceLocal], st.ToFallback, st.ToRedis)
}

// TestUnlimitedDefault: rate_limit.default -1 is "unlimited", as the README
// says: it loads, and a tenant without its own limit is never refused.
func TestUnlimitedDefault(t *testing.T) {
	for _, mode := range []string{"in-process", "redis"} {
		t.Run(mode, func(t *testing.T) {
			addr := ""
			if mode == "redis" {
				addr = servicetest.Redis(t)
			}
			mutate, _ := withLimits(addr, quota.Unlimited, 0)
			r := startRelayWith(t, "", mutate)
			for i := range 120 { // more than the default of 100 a minute
				resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderChunks: "1"})
				readAll(t, resp)
				if resp.StatusCode != 200 {
					t.Fatalf("request %d of an unlimited tenant: %d", i, resp.StatusCode)
				}
			}
		})
	}
	// And through the YAML, as an operator writes it.
	cfg, err := Parse([]byte(minimalRoute + "rate_limit:\n  default: -1\n  tenants:\n    vip: -1\n"))
	if err != nil {
		t.Fatalf("default -1: %v", err)
	}
	if cfg.RateLimit.Default != quota.Unlimited || cfg.RateLimit.Tenants["vip"] != quota.Unlimited {
		t.Fatalf("rate_limit %+v", cfg.RateLimit)
	}
	if _, err := Parse([]byte(minimalRoute + "rate_limit:\n  default: -2\n")); err == nil || !strings.Contains(err.Error(), "rate_limit.default") {
		t.Fatalf("default -2: err = %v, want one naming rate_limit.default", err)
	}
}

// TestRedisDownDenySaysSo: with Redis unavailable and on_redis_error deny,
// the 429 says the limiter is unavailable, not that the tenant spent its
// limit (it spent nothing): the caller, the row and the log could not
// tell an outage from overuse.
func TestRedisDownDenySaysSo(t *testing.T) {
	mutate, _ := withLimits(servicetest.FreeAddr(t), 600, 600) // nothing listens there
	r := startRelayWith(t, "", func(c *Config) {
		mutate(c)
		c.RateLimit.OnRedisError = "deny"
	})
	resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderChunks: "1"})
	body := readAll(t, resp)
	if resp.StatusCode != 429 || !strings.Contains(body, "rate limiter unavailable") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q: %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if row := r.rows.wait(t, resp.Header.Get("X-Request-Id")); row.ErrorType != "rate_limited" {
		t.Errorf("row error %q", row.ErrorType)
	}
}
