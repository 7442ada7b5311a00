package upstream

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestSwitchedConnectionNotReused: an upstream that answers a plain
// request with 101 Switching Protocols (the relay asked for no upgrade) and
// then speaks another protocol on the connection: the connection is closed
// after the answer, never reused. Before the fix it went back to the pool
// (a 101 has no body), and the next request read the other protocol's bytes
// as its answer.
func TestSwitchedConnectionNotReused(t *testing.T) {
	addr, accepted := scriptedUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		if readPost(br) != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\n")
		time.Sleep(100 * time.Millisecond)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nother") // the other protocol's bytes
		_, _ = io.Copy(io.Discard, br)
	})
	r := rawRoute(t, addr)
	for i := range 2 {
		s, resp, errType, status, err := openPost(r)
		if err != nil {
			t.Fatalf("request %d: Open: %v (%s, %d)", i, err, errType, status)
		}
		if code := resp.StatusCode(); code != fasthttp.StatusSwitchingProtocols {
			t.Fatalf("request %d: status %d, want the upstream's 101 (a reused connection answers 200 %q)", i, code, resp.Body())
		}
		s.Prepare(resp, nil)
		time.Sleep(200 * time.Millisecond) // the other protocol's bytes are on the connection now
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d upstream connections for 2 requests answered 101, want 2 (none reused)", n)
	}
}
