package mockllm_test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

func TestSpeech(t *testing.T) {
	_, base, c := start(t, mockllm.Options{})
	tests := []struct {
		name       string
		body       string
		chunks     int // 0: header absent
		chunkBytes int // 0: header absent
		length     bool
		wantType   string
		wantLen    int
	}{
		{name: "defaults", body: `{"input":"hi"}`, wantType: "audio/mpeg", wantLen: 16 * 4096},
		{name: "pcm", body: `{"input":"hi","response_format":"pcm"}`, chunks: 3, chunkBytes: 1000, wantType: "audio/pcm", wantLen: 3000},
		{name: "odd size", body: `{}`, chunks: 5, chunkBytes: 7, wantType: "audio/mpeg", wantLen: 35},
		// The second chunk straddles the end of the generator's period.
		{name: "wraps", body: `{}`, chunks: 2, chunkBytes: 700_000, wantType: "audio/mpeg", wantLen: 1_400_000},
		{name: "empty body", body: ``, chunks: 1, chunkBytes: 1, wantType: "audio/mpeg", wantLen: 1},
		{name: "content length", body: `{}`, chunks: 6, chunkBytes: 300_000, length: true, wantType: "audio/mpeg", wantLen: 1_800_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kv []string
			if tt.chunks != 0 {
				kv = append(kv, mockllm.HeaderChunks, strconv.Itoa(tt.chunks))
			}
			if tt.chunkBytes != 0 {
				kv = append(kv, mockllm.HeaderChunkBytes, strconv.Itoa(tt.chunkBytes))
			}
			if tt.length {
				kv = append(kv, mockllm.HeaderLength, "1")
			}
			resp := post(t, c, base+"/v1/audio/speech", tt.body, kv...)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tt.wantType {
				t.Fatalf("status = %d, Content-Type = %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if wantCL := int64(-1); tt.length && resp.ContentLength != int64(tt.wantLen) || !tt.length && resp.ContentLength != wantCL {
				t.Errorf("ContentLength = %d, want %d with X-Mock-Length %v", resp.ContentLength, tt.wantLen, tt.length)
			}
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			chunks, size := tt.chunks, tt.chunkBytes
			if chunks == 0 {
				chunks = mockllm.DefaultAudioChunks
			}
			if size == 0 {
				size = mockllm.DefaultChunkBytes
			}
			want := mockllm.AudioBytes(chunks, size)
			if len(got) != tt.wantLen || !bytes.Equal(got, want) {
				t.Errorf("got %d bytes, want %d equal to AudioBytes(%d, %d)", len(got), tt.wantLen, chunks, size)
			}
		})
	}
}

func TestAudioBytes(t *testing.T) {
	a := mockllm.AudioBytes(3, 4)
	if len(a) != 12 || !bytes.Equal(a, mockllm.AudioBytes(3, 4)) {
		t.Fatalf("AudioBytes(3, 4) = %x, not repeatable", a)
	}
	// One sequence cut into chunks: the chunk size does not change the bytes.
	if b := mockllm.AudioBytes(2, 6); !bytes.Equal(a, b) {
		t.Errorf("AudioBytes(2, 6) = %x, want %x", b, a)
	}
	if bytes.Count(a, []byte{0}) == len(a) {
		t.Errorf("AudioBytes is all zeros")
	}
	for _, tt := range [][2]int{{0, 10}, {10, 0}, {-1, 5}} {
		if got := mockllm.AudioBytes(tt[0], tt[1]); len(got) != 0 {
			t.Errorf("AudioBytes(%d, %d) has %d bytes, want 0", tt[0], tt[1], len(got))
		}
	}
}
