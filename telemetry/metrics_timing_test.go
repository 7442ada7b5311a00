package telemetry

import (
	"io"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

func BenchmarkStartWrite(b *testing.B) {
	m := New([]string{"openai", "anthropic", "tts", "embeddings"})
	r := finished("tts", 200, "", 180*time.Millisecond)
	m.Write(r)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Start(r)
			m.Write(r)
		}
	})
}

func BenchmarkStartWriteError(b *testing.B) {
	m := New([]string{"openai", "anthropic", "tts", "embeddings"})
	r := finished("openai", 502, record.ErrUpstreamReset, 180*time.Millisecond)
	m.Write(r)
	b.ReportAllocs()
	for b.Loop() {
		m.Start(r)
		m.Write(r)
	}
}

func BenchmarkWritePrometheus(b *testing.B) {
	m := New([]string{"openai", "anthropic", "tts", "embeddings"})
	b.ReportAllocs()
	for b.Loop() {
		m.WritePrometheus(io.Discard)
	}
}
