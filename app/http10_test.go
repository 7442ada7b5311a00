package app

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

// TestHTTP10ClientGetsUnframedBody: an HTTP/1.0 client reads no chunked
// framing; its streamed answer comes unframed, ending with the connection's
// close, event by event as for any client, and its row holds the body. An
// upstream's Content-Length goes with it, and a body the upstream cut short
// ends with a reset, not the close that ends a whole one: before, such a
// client read a cut answer as complete. Detached (testConfig) and on the
// server's goroutine alike.
func TestHTTP10ClientGetsUnframedBody(t *testing.T) {
	const audioLen = 16 * 8192
	for _, detach := range []string{"0", "100000"} {
		r := startRelayDetachAbove(t, detach)
		for _, tt := range []struct {
			name, path, body, hdr string
			wantLen               int   // 0: not checked
			wantCL                int64 // the Content-Length the client is told; -1: none
			cut                   bool  // the upstream resets the stream
		}{
			{"sse", "/v1/chat/completions", `{"model":"m","stream":true}`, mockllm.HeaderChunks + ": 5\r\n" + mockllm.HeaderDelayMs + ": 20\r\n", 0, -1, false},
			{"audio chunked", "/v1/audio/speech", `{"input":"hi"}`, mockllm.HeaderChunks + ": 4\r\n" + mockllm.HeaderChunkBytes + ": 1000\r\n", 4000, -1, false},
			{"audio with length", "/v1/audio/speech", `{"input":"hi"}`, mockllm.HeaderChunks + ": 16\r\n" + mockllm.HeaderChunkBytes + ": 8192\r\n" + mockllm.HeaderLength + ": 1\r\n", audioLen, audioLen, false},
			{"sse cut", "/v1/chat/completions", `{"model":"m","stream":true}`, mockllm.HeaderChunks + ": 10\r\n" + mockllm.HeaderDelayMs + ": 20\r\n" + mockllm.HeaderResetAfter + ": 3\r\n", 0, -1, true},
			{"audio with length cut", "/v1/audio/speech", `{"input":"hi"}`, mockllm.HeaderChunks + ": 16\r\n" + mockllm.HeaderChunkBytes + ": 8192\r\n" + mockllm.HeaderLength + ": 1\r\n" + mockllm.HeaderResetAfter + ": 4\r\n", 0, audioLen, true},
		} {
			t.Run("detach_above "+detach+"/"+tt.name, func(t *testing.T) {
				resp, br := rawPost(t, r.base, "HTTP/1.0", tt.path, tt.hdr, tt.body)
				if resp.StatusCode != 200 || len(resp.TransferEncoding) != 0 || resp.Header.Get("Transfer-Encoding") != "" {
					t.Fatalf("status %d, transfer encoding %v", resp.StatusCode, resp.TransferEncoding)
				}
				if resp.ContentLength != tt.wantCL {
					t.Fatalf("content length %d, want %d (the upstream's, or none)", resp.ContentLength, tt.wantCL)
				}
				got, err := io.ReadAll(br) // to the connection's close
				if tt.cut {
					if !errors.Is(err, syscall.ECONNRESET) {
						t.Fatalf("a body cut short ended with %v after %d bytes, want a reset", err, len(got))
					}
					if tt.wantCL > 0 && int64(len(got)) >= tt.wantCL {
						t.Fatalf("cut body: %d bytes of %d", len(got), tt.wantCL)
					}
					row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
					if row.ErrorType != "upstream_reset" {
						t.Errorf("cut body: row error %q, want upstream_reset", row.ErrorType)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				body := string(got)
				row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
				if row.Status != 200 || row.ErrorType != "" || row.BytesOut != int64(len(body)) {
					t.Errorf("row status %d error %q bytes_out %d, body %d bytes", row.Status, row.ErrorType, row.BytesOut, len(body))
				}
				if tt.wantLen > 0 {
					if len(body) != tt.wantLen {
						t.Errorf("audio %d bytes, want %d", len(body), tt.wantLen)
					}
					return
				}
				ev := sseEvents(body)
				if len(ev) != 8 || ev[len(ev)-1] != "[DONE]" || strings.Join(row.Chunks, "") != body {
					t.Errorf("events %q; row chunks match the body: %v", ev, strings.Join(row.Chunks, "") == body)
				}
			})
		}
	}
}

// startRelayDetachAbove is startRelay with server.detach_above set: "0"
// detaches every stream (testConfig's), a large one none.
func startRelayDetachAbove(t *testing.T, detach string) *relay {
	t.Helper()
	return startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "detach_above: 0", "detach_above: "+detach, 1)
	}, nil)
}

// rawPost sends a JSON POST to the relay at base over a connection of its
// own, in protocol proto ("HTTP/1.1", "HTTP/1.0"), with the relay key and
// the header lines hdr (each ending in CRLF), and returns the answer's head
// and the reader of what follows it. The connection closes with the test.
func rawPost(t *testing.T, base, proto, path, hdr, body string) (*http.Response, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req := "POST " + path + " " + proto + "\r\nHost: x\r\nAuthorization: Bearer " + relayKey + "\r\n" + hdr +
		"Content-Type: application/json\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	return resp, br
}
