//go:build !race

package usage

import (
	"os"
	"strings"
	"testing"
)

func TestFindAllocs(t *testing.T) {
	data := []byte(openAIStream + anthropicStream)
	if n := testing.AllocsPerRun(100, func() { Find(data) }); n != 0 {
		t.Fatalf("Find allocates %v times per run", n)
	}
}

// TestAPIScanAllocs: the first-token scan and the usage scan of every API
// allocate nothing, on the recorded streams.
func TestAPIScanAllocs(t *testing.T) {
	for _, tt := range []struct {
		file string
		api  API
	}{
		{"openai_chat.sse", OpenAIChat}, {"responses.sse", Responses}, {"anthropic.sse", Anthropic},
		{"gemini_thinking.sse", Gemini}, {"responses.sse", Generic}, {"ollama_chat.ndjson", Ollama},
	} {
		if _, err := os.Stat("testdata/" + tt.file); err != nil {
			t.Fatal(err)
		}
		r := loadStream(t, tt.file)
		if n := testing.AllocsPerRun(100, func() {
			var s ContentScanner
			s.Start(tt.api, false, 200)
			for i := range r.atMS {
				if s.Scan(r.chunk(i)) {
					break
				}
			}
			FirstTokenChunk(tt.api, false, 200, len(r.atMS), r.data, r.ends)
			var tk Tokens
			tk.Scan(tt.api, r.data[:len(r.data)/2])
			tk.Scan(tt.api, r.data[len(r.data)/2:])
			FindAPI(tt.api, r.data)
		}); n != 0 {
			t.Errorf("%s (%v): %v allocations per run", tt.file, tt.api, n)
		}
	}
}

// TestBodyScanAllocs: telling a non-streamed answer from a stream and
// scanning it with its own rules allocates nothing either.
func TestBodyScanAllocs(t *testing.T) {
	b := []byte(strings.Replace(responseObject, "OUTPUT", `{"type":"message","content":[{"type":"output_text","text":"Hi"}]}`, 1))
	if n := testing.AllocsPerRun(100, func() {
		var s ContentScanner
		s.Start(Responses, false, 200)
		for off := 0; off < len(b); off += 64 {
			if s.Scan(b[off:min(off+64, len(b))]) {
				break
			}
		}
		HasContent(Responses, b)
	}); n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}

func TestInjectIncludeUsageAllocs(t *testing.T) {
	body := []byte(`{"model":"m","stream":true}`)
	dst := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { InjectIncludeUsage(dst[:0], body) }); n != 0 {
		t.Fatalf("InjectIncludeUsage allocates %v times per run", n)
	}
}

// TestStreamErrorAllocs: the in-stream error watch allocates nothing, read
// by read over the recorded streams and over an error cut between reads.
func TestStreamErrorAllocs(t *testing.T) {
	for _, f := range []string{"openai_chat.sse", "anthropic.sse", "responses.sse", "gemini_thinking.sse"} {
		r := loadStream(t, f)
		if n := testing.AllocsPerRun(100, func() { HasStreamError(false, 200, r.data, r.ends) }); n != 0 {
			t.Errorf("%s: %v allocations per run", f, n)
		}
	}
	for _, tt := range streamErrorCases {
		b := []byte(tt.stream)
		if n := testing.AllocsPerRun(100, func() {
			var s StreamErrorScanner
			s.Start(false, 200)
			for off := 0; off < len(b); off += 7 {
				s.Scan(b[off:min(off+7, len(b))])
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations per run", tt.name, n)
		}
	}
}
