package usage

import (
	"strings"
	"testing"
)

// BenchmarkStreamErrorScan: the error watch of one relayed read of a
// typical OpenAI chunk (what the relay adds per read of an sse response).
func BenchmarkStreamErrorScan(b *testing.B) {
	chunk := []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}]}` + "\n\n")
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	var s StreamErrorScanner
	s.Start(false, 200)
	for b.Loop() {
		if s.Scan(chunk) {
			b.Fatal("error found")
		}
	}
}

// BenchmarkStreamErrorRecorded: the error watch over each recorded stream,
// read by read.
func BenchmarkStreamErrorRecorded(b *testing.B) {
	for _, f := range []string{"openai_chat.sse", "anthropic.sse", "responses.sse", "gemini_thinking.sse"} {
		b.Run(f, func(b *testing.B) {
			r := loadStream(b, f)
			b.SetBytes(int64(len(r.data)))
			b.ReportAllocs()
			for b.Loop() {
				if HasStreamError(false, 200, r.data, r.ends) {
					b.Fatal("error found")
				}
			}
		})
	}
}

// BenchmarkStreamErrorBurst: the error watch of one long read that holds
// many events and ends inside one (a relay that fell behind reads what
// piled up), per event: the event the read ends in is walked from its
// start, found by a search back from the read's end.
func BenchmarkStreamErrorBurst(b *testing.B) {
	chunk := `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}]}` + "\n\n"
	const events = 170
	read := []byte(strings.Repeat(chunk, events) + chunk[:100])
	b.SetBytes(int64(len(read)))
	b.ReportAllocs()
	var s StreamErrorScanner
	for b.Loop() {
		s.Start(false, 200)
		if s.Scan(read) {
			b.Fatal("error found")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/events, "ns/event")
}

// BenchmarkStreamErrorCut: the error watch over the recorded Responses
// stream read 256 bytes at a time, whatever its events (what a relay
// reads from a slow link): most reads end inside an event, which is walked
// from its start and on across the cut.
func BenchmarkStreamErrorCut(b *testing.B) {
	r := loadStream(b, "responses.sse")
	var ends []uint32
	for i := 256; i < len(r.data); i += 256 {
		ends = append(ends, uint32(i))
	}
	ends = append(ends, uint32(len(r.data)))
	b.SetBytes(int64(len(r.data)))
	b.ReportAllocs()
	for b.Loop() {
		if HasStreamError(false, 200, r.data, ends) {
			b.Fatal("error found")
		}
	}
}

// BenchmarkStreamErrorBody: the error watch over a JSON body (Gemini
// without alt=sse: one array, an element at a time), which is walked
// whole, read by read; its text parts are long, as an answer's are.
func BenchmarkStreamErrorBody(b *testing.B) {
	text := strings.Repeat("The sky is blue because of Rayleigh scattering. ", 20)
	elem := `{"candidates": [{"content": {"parts": [{"text": "` + text + `"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 210}}`
	var data []byte
	var ends []uint32
	for i := range 8 {
		sep := "[" + elem
		if i > 0 {
			sep = "\n,\r\n" + elem
		}
		data = append(data, sep...)
		ends = append(ends, uint32(len(data)))
	}
	data = append(data, "\n]"...)
	ends = append(ends, uint32(len(data)))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if HasStreamError(false, 200, data, ends) {
			b.Fatal("error found")
		}
	}
}
