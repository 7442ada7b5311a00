package handlers

import (
	"bufio"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// stalled reads r, then fails with err.
type stalled struct {
	r   io.Reader
	err error
}

func (s *stalled) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		return n, s.err
	}
	return n, err
}

// TestHeadRefused sorts the errors fasthttp's header read returns: a head
// that arrived whole and was refused, against one that did not arrive.
func TestHeadRefused(t *testing.T) {
	tests := []struct {
		name string
		r    io.Reader
		size int
		want bool
	}{
		{"control byte", strings.NewReader("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n"), 4096, true},
		{"DEL in a name", strings.NewReader("GET / HTTP/1.1\r\nHost: a\r\nX\x7f: b\r\n\r\n"), 4096, true},
		{"no Host", strings.NewReader("GET / HTTP/1.1\r\nX: b\r\n\r\n"), 4096, true},
		{"control byte in the target", strings.NewReader("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 4096, true},
		{"not a request line", strings.NewReader("HELLO\r\n\r\n"), 4096, true},
		{"ended inside the head", strings.NewReader("GET / HTTP/1.1\r\nHost: a\r\n"), 4096, false},
		{"timed out inside the head", &stalled{strings.NewReader("GET / HTTP/1.1\r\nHost: a\r\n"), os.ErrDeadlineExceeded}, 4096, false},
		{"head over the buffer", strings.NewReader("GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("b", 100) + "\r\n\r\n"), 32, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h fasthttp.RequestHeader
			err := h.Read(bufio.NewReaderSize(tt.r, tt.size))
			if err == nil {
				t.Fatal("read without an error")
			}
			if got := headRefused(err); got != tt.want {
				t.Errorf("headRefused(%v) = %v, want %v", err, got, tt.want)
			}
		})
	}
	var req fasthttp.Request
	err := req.Read(bufio.NewReader(strings.NewReader("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")))
	if err == nil || headRefused(err) {
		t.Errorf("a broken chunked body: headRefused(%v) is true", err)
	}
}
