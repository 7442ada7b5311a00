package upstream

import (
	"bufio"
	"io"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// chunkReader yields the same chunk n times, like an upstream body stream.
type chunkReader struct {
	chunk []byte
	left  int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	r.left--
	return copy(p, r.chunk), nil
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

// testStream is a Stream over an in-memory upstream body, for the copy
// path's allocation tests and benchmarks.
func testStream(kind record.Kind, capture bool, chunk []byte) (*Stream, *chunkReader) {
	cr := &chunkReader{chunk: chunk}
	rec := record.Acquire(64 << 20)
	rec.Capture = capture
	rec.Kind = kind
	s := &Stream{
		route: &Route{Options: Options{Kind: kind}},
		rec:   rec,
		body:  cr,
		buf:   make([]byte, readBufSize),
		start: time.Now(),
	}
	return s, cr
}

// resetStream empties the record's buffers but keeps their capacity, as a
// pooled record does between requests.
func resetStream(s *Stream) {
	r := s.rec
	r.Chunks.Data, r.Chunks.Ends, r.Chunks.AtMS = r.Chunks.Data[:0], r.Chunks.Ends[:0], r.Chunks.AtMS[:0]
	r.ChunkCount, r.BytesOut, r.Truncated, r.TTFT = 0, 0, false, record.None
	s.ttft.reset()
}

var sseChunk = []byte(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}]}` + "\n\n")
