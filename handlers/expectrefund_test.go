package handlers

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/quota"
)

// refundingLimiter admits everything, counts its decisions and the refunds
// it is given.
type refundingLimiter struct {
	countingLimiter
	refunds atomic.Int64
}

func (l *refundingLimiter) Refund(tenant, keyID string, d quota.Decision) {
	if tenant == "t" && keyID != "" && d.Allowed {
		l.refunds.Add(1)
	}
}

// waitCount waits up to 10 seconds for c to reach want and returns its
// value then.
func waitCount(c *atomic.Int64, want int64) int64 {
	for deadline := time.Now().Add(10 * time.Second); c.Load() != want && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	return c.Load()
}

// TestExpectContinueRefundsFailedUpload: a request with "Expect:
// 100-continue" admitted before its upload (the limiter asked once) whose
// client then leaves, right after 100 Continue or after part of its body,
// gives its rate-limit token back, once; a request served keeps it.
func TestExpectContinueRefundsFailedUpload(t *testing.T) {
	lim := &refundingLimiter{}
	addr, _, mock := storageRelay(t, &fullStorage{}, lim)
	body := `{"model":"m","messages":[],"pad":"` + strings.Repeat("a", 3000) + `"}`
	head := expectRouteHead("POST", "/v1/chat/completions", "Authorization: Bearer sk-test\r\n", len(body), true)
	for i, sent := range []int{0, len(body) / 2} {
		resp, _, c := servicetest.SendHead(t, addr, head)
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("upload %d: %d before the upload, want 100", i, resp.StatusCode)
		}
		if _, err := io.WriteString(c, body[:sent]); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if n := waitCount(&lim.refunds, int64(i+1)); n != int64(i+1) {
			t.Fatalf("after %d failed uploads, %d refunds", i+1, n)
		}
	}
	resp, br, c := servicetest.SendHead(t, addr, head)
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("%d before the upload, want 100", resp.StatusCode)
	}
	if _, err := io.WriteString(c, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the upload served: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.Close()
	time.Sleep(100 * time.Millisecond) // a refund would follow the request's end at once
	if n, takes := lim.refunds.Load(), lim.takes.Load(); n != 2 || takes != 3 {
		t.Errorf("%d refunds for 3 decisions (%d), want 2: the served request keeps its token", n, takes)
	}
	if n := mock.Count(); n != 1 {
		t.Errorf("%d requests reached the upstream, want 1", n)
	}
}

// TestExpectContinueRefundRedis: on the real Redis, a tenant that may send
// one request a minute sends one with "Expect: 100-continue" and leaves
// after 100 Continue: its token goes back to the Redis bucket, so its next
// request is admitted (100 Continue) and served, and the one after that is
// refused before its upload (429).
func TestExpectContinueRefundRedis(t *testing.T) {
	l, err := quota.New(quota.Options{
		RedisAddr: servicetest.Redis(t), KeyPrefix: "test:rl:expectrefund:" + time.Now().Format("150405.000000000") + ":",
		Default: 1, Burst: 1, Lease: 1, Timeout: 2 * time.Second, ProbeInterval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	addr, _, _ := storageRelay(t, &fullStorage{}, l)
	body := `{"model":"m","messages":[],"pad":"` + strings.Repeat("a", 3000) + `"}`
	head := expectRouteHead("POST", "/v1/chat/completions", "Authorization: Bearer sk-test\r\n", len(body), true)

	resp, _, c := servicetest.SendHead(t, addr, head)
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("first request: %d before the upload, want 100", resp.StatusCode)
	}
	c.Close() // the upload fails

	// The refund reaches Redis in the background: until then the bucket
	// is empty and the next request is refused (429) before its upload.
	br, c := continued(t, addr, head)
	if _, err := io.WriteString(c, body); err != nil {
		t.Fatal(err)
	}
	resp, err = http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the request admitted with the refunded token: %v %v", resp, err)
	}
	resp, _, _ = servicetest.SendHead(t, addr, head)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after a served request: %d, want 429 before the upload (the served request keeps its token)", resp.StatusCode)
	}
	if st := l.Stats(); st.ToFallback != 0 || st.Admitted[quota.SourceRedis] != 2 {
		t.Errorf("stats %+v: want 2 admissions by Redis, no fallback", st)
	}
}

// continued sends head to addr until it gets 100 Continue, for up to 10
// seconds while it gets 429, and returns the reader and connection to
// upload on.
func continued(t *testing.T, addr, head string) (*bufio.Reader, net.Conn) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, br, c := servicetest.SendHead(t, addr, head)
		if resp.StatusCode == http.StatusContinue {
			return br, c
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		c.Close()
		if resp.StatusCode != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("after the failed upload: %d, want 100 once the token is back", resp.StatusCode)
		}
	}
}
