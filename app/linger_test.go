package app

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestRefusalReadBeforeUpload: a client still uploading a body over
// server.max_body_bytes finishes its upload and reads the 413 (and one
// with a head over the read buffer the 431), however fast the relay
// refused: the relay's close reset the connection with the upload unread,
// the client's next write failed, and Node's fetch under the official
// SDKs reported ECONNRESET instead of the answer, then uploaded the whole
// body again.
func TestRefusalReadBeforeUpload(t *testing.T) {
	r := startRelayWith(t, "", func(c *Config) { c.Server.MaxBodyBytes = 1 << 20 })
	const bodyLen = 8 << 20
	for _, tt := range []struct{ name, extra, want string }{
		{"body over the limit", "", "HTTP/1.1 413 "},
		{"head over the buffer", "X-Trace: " + strings.Repeat("t", 20000) + "\r\n", "HTTP/1.1 431 "},
	} {
		got := 0
		const tries = 8
		for i := range tries {
			c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			// As fetch does: the whole upload first, then the answer.
			fmt.Fprintf(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer %s\r\n%sContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", relayKey, tt.extra, bodyLen)
			chunk := []byte(strings.Repeat("y", 64<<10))
			var werr error
			for n := 0; n < bodyLen && werr == nil; n += len(chunk) {
				_, werr = c.Write(chunk)
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			_ = c.Close()
			// A failed upload write is what fetch reports (ECONNRESET),
			// the answer unread.
			if werr == nil && strings.HasPrefix(line, tt.want) {
				got++
			} else {
				t.Logf("%s, try %d: upload %v, answer %q, %v", tt.name, i, werr, line, err)
			}
		}
		if got != tries {
			t.Errorf("%s: %d of %d clients read the refusal", tt.name, got, tries)
		}
	}
}
