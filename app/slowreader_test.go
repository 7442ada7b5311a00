package app

import (
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSlowReaderNotCut: a client that reads a large answer steadily but
// slowly (about 160 KB/s, far below what a send buffer holds per idle
// timeout) takes bytes all along and is not given up as gone at the
// route's idle_timeout; it was cut as client_closed, one blocked write
// counted as the client taking nothing until most of the send buffer
// (megabytes) had drained.
func TestSlowReaderNotCut(t *testing.T) {
	const size = 64 << 20
	up := rawTarget(t, func(c net.Conn, _ []byte) {
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
		chunk := make([]byte, 256<<10)
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	p := startPool(t, poolConfig(t, `
  - name: tts
    path: /v1/audio/speech
    upstream: `+up+`
    auth_env: TEST_PROVIDER_KEY
    kind: raw
    idle_timeout: 2s
`, "rate_limit: {disabled: true}"))
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(p.base, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"model":"tts-1","input":"hi","voice":"alloy"}`
	if _, err := io.WriteString(c, "POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+
		"\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	// Three idle timeouts of slow, steady reading: no row may appear
	// (the relay's cut finishes the request's record at once).
	buf := make([]byte, 8<<10)
	read := 0
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := c.Read(buf)
		read += n
		if err != nil {
			t.Fatalf("read after %d bytes: %v", read, err)
		}
		if rows := p.sink.all(); len(rows) > 0 {
			t.Fatalf("the slow reader was given up after %d bytes: row %+v", read, rows[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
	if read < 256<<10 {
		t.Fatalf("read %d bytes in 6 s; the client was to read about 1 MB", read)
	}
	_ = c.Close()
	if r := waitPoolRows(t, p, 1)[0]; r.ErrorType != "client_closed" {
		t.Errorf("row %+v once the client left; want client_closed", r)
	}
}
