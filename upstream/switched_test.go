package upstream

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// TestSwitchedConnectionNotReused: an upstream that answers a plain
// request with 101 Switching Protocols (the relay asked for no upgrade) and
// then speaks another protocol on the connection: the answer is an
// upstream_reset (502) and the connection is closed, never reused. Before
// the first fix it went back to the pool (a 101 has no body), and the next
// request read the other protocol's bytes as its answer; then the 101 was
// relayed, to a client that had asked for no upgrade either, without its
// Upgrade field, as a success.
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
		_, resp, errType, status, err := openPost(r)
		if err == nil || errType != record.ErrUpstreamReset || status != fasthttp.StatusBadGateway {
			t.Fatalf("request %d: Open: %v (%s, %d), status %d; want upstream_reset 502", i, err, errType, status, resp.StatusCode())
		}
		time.Sleep(200 * time.Millisecond) // the other protocol's bytes are on the connection now
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("%d upstream connections for 2 requests answered 101, want 2 (none reused)", n)
	}
}
