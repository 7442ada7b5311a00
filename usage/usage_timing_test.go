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

func BenchmarkInjectIncludeUsage(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalRequest)))
	dst := make([]byte, 0, 2*len(typicalRequest))
	for b.Loop() {
		dst, _ = InjectIncludeUsage(dst[:0], typicalRequest)
	}
}
