package upstream

import (
	"bufio"
	"bytes"
	"strconv"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// chunkedSource is an upstream body in chunked framing that can be replayed.
type chunkedSource struct {
	data []byte
	rd   bytes.Reader
}

// newChunkedSource frames n copies of chunk, each as one HTTP chunk.
func newChunkedSource(chunk []byte, n int) *chunkedSource {
	var b []byte
	for i := 0; i < n; i++ {
		b = strconv.AppendInt(b, int64(len(chunk)), 16)
		b = append(b, "\r\n"...)
		b = append(b, chunk...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "0\r\n\r\n"...)
	src := &chunkedSource{data: b}
	src.rd.Reset(b)
	return src
}

func (c *chunkedSource) rewind() {
	c.rd.Reset(c.data)
}

// flushWriter flushes every write, as fasthttp's chunked body writer does.
type flushWriter struct{ w *bufio.Writer }

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, f.w.Flush()
}

// testStream is a Stream over an in-memory chunked upstream body, for the
// copy path's allocation tests and benchmarks.
func testStream(kind record.Kind, capture bool, src *chunkedSource) *Stream {
	rec := record.Acquire(64 << 20)
	rec.Capture = capture
	rec.Kind = kind
	s := &Stream{
		route: &Route{Options: Options{Kind: kind}},
		rec:   rec,
		start: time.Now(),
	}
	s.rb.reset(&src.rd, nil, nil)
	s.body.reset(&s.rb, bodyChunked, 0)
	return s
}

// resetStream rewinds the source and empties the record's buffers but keeps
// their capacity, as a pooled record does between requests.
func resetStream(s *Stream, src *chunkedSource) {
	src.rewind()
	s.rb.reset(&src.rd, nil, nil)
	s.body.reset(&s.rb, bodyChunked, 0)
	r := s.rec
	r.Chunks.Data, r.Chunks.Ends, r.Chunks.AtMS = r.Chunks.Data[:0], r.Chunks.Ends[:0], r.Chunks.AtMS[:0]
	r.ChunkCount, r.BytesOut, r.Truncated, r.TTFT = 0, 0, false, record.None
	s.ttft.reset()
}

var sseChunk = []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}]}` + "\n\n")
