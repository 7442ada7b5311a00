package upstream

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestPreloadLargerThanReadBuffer: a route whose read buffer (4 KiB) is
// smaller than what one read brings in with the response head (the head's
// reader holds 16 KiB) relays the body whole. Before the fix preload cut
// what did not fit: a hole in the body, then a wait for bytes that never
// came.
func TestPreloadLargerThanReadBuffer(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", 700) // 11,200 bytes
	for _, framing := range []string{"length", "chunked"} {
		t.Run(framing, func(t *testing.T) {
			answer := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			if framing == "chunked" {
				answer = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", len(body), body)
			}
			addr, _ := scriptedUpstream(t, func(c net.Conn) {
				if readPost(bufio.NewReader(c)) != nil {
					return
				}
				_, _ = io.WriteString(c, answer) // head and body in one write
				time.Sleep(5 * time.Second)
			})
			r := rawRouteWith(t, addr, func(o *Options) {
				o.ReadBufferBytes, o.IdleTimeout = MinReadBufferBytes, 3*time.Second
			})
			s, resp, errType, status, err := openPost(r)
			if err != nil {
				t.Fatalf("Open: %v (%s, %d)", err, errType, status)
			}
			var got []byte
			if s.Prepare(resp, nil) {
				var b bytes.Buffer
				if _, err := s.WriteTo(&b); err != nil {
					t.Fatalf("WriteTo after %d bytes: %v", b.Len(), err)
				}
				s.CloseWithError(nil)
				got = b.Bytes()
			} else {
				got = resp.Body() // the whole body came with the head
			}
			if string(got) != body {
				t.Fatalf("body of %d bytes relayed as %d bytes (equal: %v)", len(body), len(got), string(got) == body)
			}
		})
	}
}
