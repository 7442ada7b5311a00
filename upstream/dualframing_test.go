package upstream

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestFramedTwiceNotReused: an answer chunked and with a Content-Length
// (either order, any case) is read by its chunks and its connection is
// closed after it, not reused: the two framings disagree on where the
// answer ends. One framed once keeps its connection.
func TestFramedTwiceNotReused(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		conns      int64
	}{
		{"length first", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n", 3},
		{"chunked first", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ncontent-LENGTH: 2\r\n\r\n", 3},
		{"after line ends", "\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n", 3},
		{"chunked only", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Content-Length: 9\r\n\r\n", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, accepted := scriptedUpstream(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for readPost(br) == nil {
					_, _ = io.WriteString(c, tc.head+"4\r\nGOOD\r\n0\r\n\r\n")
				}
			})
			r := rawRoute(t, addr)
			for i := 0; i < 3; i++ {
				if got := readAnswer(t, r); got != "GOOD" {
					t.Fatalf("request %d answered %q, want GOOD (the chunks)", i, got)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if n := accepted.Load(); n != tc.conns {
				t.Errorf("%d upstream connections for 3 requests in a row, want %d", n, tc.conns)
			}
		})
	}
}

// readAnswer sends a request on r and returns the answer's body, streamed
// or whole.
func readAnswer(t *testing.T, r *Route) string {
	t.Helper()
	s, resp, errType, status, err := openPost(r)
	if err != nil {
		t.Fatalf("Open: %v (%s, %d)", err, errType, status)
	}
	if !s.Prepare(resp, nil) {
		return string(resp.Body())
	}
	var b bytes.Buffer
	_, err = s.WriteTo(&b)
	s.CloseWithError(nil)
	if err != nil {
		t.Fatalf("WriteTo after %d bytes: %v", b.Len(), err)
	}
	return b.String()
}

func TestHasLengthLine(t *testing.T) {
	for head, want := range map[string]bool{
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n":             true,
		"HTTP/1.1 200 OK\r\nA: b\r\nCONTENT-LENGTH:1\r\n\r\n":      true,
		"HTTP/1.1 200 OK\r\nA: b\r\n\r\nContent-Length: 1\r\n\r\n": false, // in the body
		"HTTP/1.1 200 OK\r\nX-Content-Length: 1\r\n\r\n":           false,
		"HTTP/1.1 200 OK\r\nContent-Length\r\n\r\n":                false,
		"Content-Length: 1\r\n\r\n":                                false, // the status line
		"":                                                         false,
	} {
		if got := hasLengthLine([]byte(head)); got != want {
			t.Errorf("hasLengthLine(%q) = %v, want %v", head, got, want)
		}
	}
}

// BenchmarkHasLengthLine: the look for a Content-Length line every answer
// head gets (a typical streamed one: chunked, no length).
func BenchmarkHasLengthLine(b *testing.B) {
	head := []byte("HTTP/1.1 200 OK\r\nDate: Sat, 05 Dec 2026 20:00:00 GMT\r\nContent-Type: text/event-stream\r\n" +
		"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\nX-Request-Id: req_0123456789abcdef\r\n" +
		"Openai-Processing-Ms: 112\r\nCache-Control: no-cache\r\n\r\n14\r\ndata: {\"x\":1}\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if hasLengthLine(head) {
			b.Fatal("found")
		}
	}
}
