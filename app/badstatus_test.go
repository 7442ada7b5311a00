package app

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestUpstreamStatusOutOfRange: an upstream answer whose status code is
// outside 100..599 is a malformed answer, 502 at once: fasthttp read 000
// as 200 (a success for the client and the row), took 099 for an interim
// answer and waited for the next until the timeout, and relayed 600 as it
// came.
func TestUpstreamStatusOutOfRange(t *testing.T) {
	// fasthttp skips empty lines before a status line; so must the check.
	for _, line := range []string{"HTTP/1.1 000 Z", "HTTP/1.1 099 Small", "HTTP/1.1 600 Big", "\r\n\r\nHTTP/1.1 000 Z"} {
		t.Run(strings.TrimSpace(line), func(t *testing.T) {
			up := rawTarget(t, func(c net.Conn, _ []byte) {
				_, _ = io.WriteString(c, line+"\r\nContent-Length: 2\r\n\r\nok")
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, _ = io.Copy(io.Discard, c) // open until the relay closes
			})
			p := chatPool(t, up, "    first_byte_timeout: 20s\n")
			// Waiting for another head would end in first_byte_timeout's
			// 504: the status says whether the relay waited.
			a := postClose(t, p.base, cutBody(100))
			if a.status != 502 {
				t.Fatalf("status %d: %q; want 502", a.status, a.raw)
			}
			if r := waitPoolRows(t, p, 1)[0]; r.Status != 502 || r.ErrorType != record.ErrUpstreamReset {
				t.Errorf("row %+v; want 502 upstream_reset", r)
			}
		})
	}
}

// TestUpstreamBareLFHead: an answer head whose lines end in bare LFs, from
// an upstream that keeps its connection open, is refused at once (502
// upstream_reset): the relay waited first_byte_timeout for a CRLFCRLF that
// never came and answered 504. A head of CRLFs with a bare LF inside a line
// end before its blank line is fasthttp's to judge, and passes.
func TestUpstreamBareLFHead(t *testing.T) {
	for _, tt := range []struct {
		name, head string
		status     int
	}{
		{"all bare", "HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 2\n\n", 502},
		{"bare blank line", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\n", 502},
		{"bare before blank", "HTTP/1.1 200 OK\r\nContent-Length: 2\n\r\n", 502},
		{"interim then bare", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\nContent-Length: 2\n\n", 502},
		{"bare inside, CRLF end", "HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\n", 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := rawTarget(t, func(c net.Conn, _ []byte) {
				// The head in two writes: the blank line comes in the second.
				_, _ = io.WriteString(c, tt.head[:len(tt.head)-3])
				time.Sleep(20 * time.Millisecond)
				_, _ = io.WriteString(c, tt.head[len(tt.head)-3:]+"ok")
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, _ = io.Copy(io.Discard, c) // open until the relay closes
			})
			p := chatPool(t, up, "    first_byte_timeout: 20s\n")
			// Waiting for the head would end in first_byte_timeout's 504.
			a := postClose(t, p.base, cutBody(100))
			if a.status != tt.status {
				t.Fatalf("status %d: %q; want %d", a.status, a.raw, tt.status)
			}
			r := waitPoolRows(t, p, 1)[0]
			if tt.status == 200 {
				if a.body != "ok" || r.Status != 200 {
					t.Errorf("body %q, row %+v; want ok and a 200 row", a.body, r)
				}
				return
			}
			if r.Status != 502 || r.ErrorType != record.ErrUpstreamReset {
				t.Errorf("row %+v; want 502 upstream_reset", r)
			}
		})
	}
}
