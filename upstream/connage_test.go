package upstream

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// TestConnectionAgeLimit: an upstream connection older than maxConnAge is
// closed after its answer instead of going back to the pool, so that a
// route in steady use follows a changed DNS answer; a younger one is
// reused. A busy route kept its connections, and the old address, for
// good.
func TestConnectionAgeLimit(t *testing.T) {
	addr, accepted := scriptedUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for readPost(br) == nil {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nGOOD")
		}
	})
	r := rawRoute(t, addr)
	sendGood(t, r, 3)
	if n := accepted.Load(); n != 1 {
		t.Fatalf("%d upstream connections for 3 requests in a row, want 1", n)
	}
	defer func(d time.Duration) { maxConnAge = d }(maxConnAge)
	maxConnAge = time.Nanosecond
	sendGood(t, r, 3)
	if n := accepted.Load(); n != 3 {
		t.Errorf("%d upstream connections after 3 more requests on connections past maxConnAge, want 3 (the old one, closed after the first, then one each)", n)
	}
}

// sendGood sends n requests on r, 20 ms apart, each of which must be
// answered "GOOD".
func sendGood(t *testing.T, r *Route, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		s, resp, _, _, err := openPost(r)
		if err != nil {
			t.Fatal(err)
		}
		s.Prepare(resp, nil)
		if string(resp.Body()) != "GOOD" {
			t.Fatalf("request %d answered %d %q", i, resp.StatusCode(), resp.Body())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
