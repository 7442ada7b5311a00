package app

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

// TestReadBufferPerRoute: a raw route relays a bulk body in pieces of up
// to its read buffer, 256 KiB by default, and read_buffer_bytes sets
// another size: the HTTP chunks on the client's socket are the pieces the
// relay read. The client waits before reading, so that the upstream's
// bytes pile up in the relay's socket and each read takes a full buffer.
// The route captures the audio: bytes a route does not keep are spliced
// and never pass through the read buffer (TestRawAudioSpliced).
func TestReadBufferPerRoute(t *testing.T) {
	const chunks, chunkBytes = 128, 64 << 10 // 8 MiB
	want := mockllm.AudioBytes(chunks, chunkBytes)
	for _, tt := range []struct {
		name     string
		setting  string // the tts route's read_buffer_bytes line
		min, max int    // the largest HTTP chunk must lie in (min, max]
	}{
		{"default", "", 64 << 10, 256 << 10},
		{"65536", "    read_buffer_bytes: 65536\n", 32 << 10, 64 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := startRelayYAML(t, func(y string) string {
				return strings.Replace(y, "kind: raw\n", "kind: raw\n    capture: full\n    max_capture_bytes: 16777216\n"+tt.setting, 1)
			}, nil)
			c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			hdr := "X-Mock-Chunks: " + strconv.Itoa(chunks) + "\r\nX-Mock-Chunk-Bytes: " + strconv.Itoa(chunkBytes) + "\r\n"
			if _, err := io.WriteString(c, relayReq("/v1/audio/speech", hdr, `{"model":"tts-1","input":"hi"}`)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
			br := bufio.NewReaderSize(c, 1<<20)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 200 || len(resp.TransferEncoding) == 0 {
				t.Fatalf("status %d, transfer encoding %v; want 200 chunked", resp.StatusCode, resp.TransferEncoding)
			}
			// Read the chunked framing by hand: net/http hides chunk sizes.
			var body []byte
			largest := 0
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("chunk size line: %v", err)
				}
				n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
				if err != nil {
					t.Fatalf("chunk size %q: %v", line, err)
				}
				if n == 0 {
					break
				}
				largest = max(largest, int(n))
				p := make([]byte, n+2)
				if _, err := io.ReadFull(br, p); err != nil {
					t.Fatalf("chunk of %d bytes: %v", n, err)
				}
				body = append(body, p[:n]...)
			}
			if !bytes.Equal(body, want) {
				t.Fatalf("relayed %d bytes, not the upstream's %d", len(body), len(want))
			}
			if largest <= tt.min || largest > tt.max {
				t.Errorf("largest chunk %d bytes; want more than %d, at most %d", largest, tt.min, tt.max)
			}
		})
	}
}
