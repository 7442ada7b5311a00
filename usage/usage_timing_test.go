package usage

import (
	"strings"
	"testing"
)

// typicalStream is a 200-chunk OpenAI stream ending in a usage chunk.
var typicalStream = []byte(strings.Repeat(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"token"}}],"usage":null}`+"\n\n", 200) + openAIStream)

func BenchmarkFind(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalStream)))
	for b.Loop() {
		Find(typicalStream)
	}
}

var typicalRequest = []byte(`{"messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"` + strings.Repeat("hello ", 500) + `"}],"model":"gpt-4o","stream":true,"temperature":0.2}`)

func BenchmarkModel(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalRequest)))
	for b.Loop() {
		Model(typicalRequest)
	}
}

// largeImageRequest is a chat request with 4 MiB of base64 image before
// its model, in the order the OpenAI SDKs send.
var largeImageRequest = []byte(`{"messages":[{"role":"user","content":[{"type":"text","text":"what is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` +
	strings.Repeat("iVBORw0KGgoAAAANSUhEUg", 4<<20/22) + `"}}]}],"model":"gpt-4o","stream":true}`)

func BenchmarkModelLargeImageFirst(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(largeImageRequest)))
	for b.Loop() {
		if Model(largeImageRequest) != "gpt-4o" {
			b.Fatal("no model")
		}
	}
}

func BenchmarkInjectIncludeUsage(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalRequest)))
	dst := make([]byte, 0, 2*len(typicalRequest))
	for b.Loop() {
		dst, _ = InjectIncludeUsage(dst[:0], typicalRequest)
	}
}

// BenchmarkFirstToken: the first-token scan of a recorded stream of each
// API, read by read, up to the first content (what the relay does per
// stream before the clock stops).
func BenchmarkFirstToken(b *testing.B) {
	for _, tt := range []struct {
		file string
		api  API
	}{
		{"openai_chat.sse", OpenAIChat}, {"responses.sse", Responses}, {"responses.sse", Generic},
		{"anthropic.sse", Anthropic}, {"gemini_thinking.sse", Gemini},
	} {
		b.Run(tt.file+"/"+tt.api.String(), func(b *testing.B) {
			r := loadStream(b, tt.file)
			b.ReportAllocs()
			for b.Loop() {
				if FirstTokenChunk(tt.api, false, 200, len(r.atMS), r.data, r.ends) < 0 {
					b.Fatal("no token")
				}
			}
		})
	}
}

// BenchmarkFindAPI: the usage scan of a whole recorded stream.
func BenchmarkFindAPI(b *testing.B) {
	for _, tt := range []struct {
		file string
		api  API
	}{{"responses.sse", Responses}, {"gemini.sse", Gemini}, {"gemini.sse", Generic}} {
		b.Run(tt.file+"/"+tt.api.String(), func(b *testing.B) {
			r := loadStream(b, tt.file)
			b.SetBytes(int64(len(r.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, ok := FindAPI(tt.api, r.data); !ok {
					b.Fatal("no usage")
				}
			}
		})
	}
}
