package app

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/quota"
)

// slowRedis is a TCP proxy in front of the real Redis that holds every
// reply for delay: a Redis that answers, slowly.
func slowRedis(t *testing.T, redisAddr string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r, err := net.Dial("tcp", redisAddr)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); r.Close() })
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(r, c) }()
			go func() {
				defer wg.Done()
				buf := make([]byte, 64<<10)
				for {
					n, err := r.Read(buf)
					if n > 0 {
						time.Sleep(delay)
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						c.Close()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestRedisTimeoutSetting: rate_limit.redis_timeout is how long a request
// waits for its Redis decision. Behind a Redis whose every reply takes
// 300 ms, the default 50 ms sends the relay to on_redis_error; 10 s lets
// Redis decide every request.
func TestRedisTimeoutSetting(t *testing.T) {
	slow := slowRedis(t, servicetest.Redis(t), 300*time.Millisecond)
	for _, tc := range []struct {
		timeout      time.Duration
		wantFallback bool
	}{{0, true}, {10 * time.Second, false}} {
		t.Run(tc.timeout.String(), func(t *testing.T) {
			mutate, _ := withLimits(slow, 600, 600)
			r := startRelayWith(t, "", func(c *Config) {
				mutate(c)
				c.RateLimit.RedisTimeout = tc.timeout
				c.RateLimit.Lease = 1 // every request asks Redis
			})
			for i := 0; i < 3; i++ {
				resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderChunks: "1"})
				readAll(t, resp)
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: %d", i, resp.StatusCode)
				}
			}
			st := r.app.limiter.Stats()
			if fell := st.ToFallback > 0; fell != tc.wantFallback {
				t.Errorf("redis_timeout %v behind a 300 ms Redis: switches to the fallback %d, decided by Redis %d, locally %d; want a switch: %v",
					tc.timeout, st.ToFallback, st.Admitted[quota.SourceRedis], st.Admitted[quota.SourceLocal], tc.wantFallback)
			}
			if !tc.wantFallback && st.Admitted[quota.SourceRedis] != 3 {
				t.Errorf("redis_timeout %v: Redis decided %d of 3 requests (stats %+v)", tc.timeout, st.Admitted[quota.SourceRedis], st)
			}
		})
	}
}
