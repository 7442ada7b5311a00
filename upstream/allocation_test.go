//go:build !race

package upstream

import (
	"bufio"
	"io"
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

var (
	responsesChunk = []byte("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"token \"}\n\n")
	geminiChunk    = []byte(`data: {"candidates": [{"content": {"parts": [{"text": "token "}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 1,"totalTokenCount": 10},"modelVersion": "gemini-2.0-flash"}` + "\r\n\r\n")
)

// TestStreamCopyAllocatesNothing: relaying a stream (decode the upstream's
// chunked framing, stamp, capture, feed the usage window, scan for the
// first token with the path's API rules, write and flush) allocates nothing
// once the pooled record's buffers have grown.
func TestStreamCopyAllocatesNothing(t *testing.T) {
	tests := []struct {
		name    string
		kind    record.Kind
		capture bool
		path    string
		chunk   []byte
	}{
		{"sse full capture", record.KindSSE, true, "/v1/chat/completions", sseChunk},
		{"sse meta", record.KindSSE, false, "/v1/chat/completions", sseChunk},
		{"raw", record.KindRaw, false, "/v1/audio/speech", sseChunk},
		{"responses meta", record.KindSSE, false, "/v1/responses", responsesChunk},
		{"gemini full capture", record.KindSSE, true, "/v1beta/models/gemini-2.0-flash:streamGenerateContent", geminiChunk},
		{"generic path", record.KindSSE, false, "/custom", responsesChunk},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newChunkedSource(tt.chunk, 500)
			s := testStream(tt.kind, tt.capture, src)
			s.rec.Path, s.rec.Status = tt.path, 200
			w := flushWriter{bufio.NewWriter(io.Discard)}
			run := func() {
				resetStream(s, src)
				if _, err := s.WriteTo(w); err != nil {
					t.Fatal(err)
				}
			}
			run() // grow the record's buffers once, as a pooled record has
			if n := testing.AllocsPerRun(20, run); n != 0 {
				t.Errorf("%v allocations per 500-event stream, want 0", n)
			}
			if s.rec.BytesOut != int64(500*len(tt.chunk)) || s.rec.TTFT == record.None {
				t.Errorf("bytes %d ttft %v", s.rec.BytesOut, s.rec.TTFT)
			}
			// Only bytes capture did not keep go to the window.
			if want := tt.kind == record.KindSSE && !tt.capture; want != (s.rec.Window != nil && s.rec.Window.Len() > 0) {
				t.Errorf("window %v for kind %v capture %v", s.rec.Window, tt.kind, tt.capture)
			}
		})
	}
}

// TestStreamFramedWriteAllocs: relaying a stream through the direct path
// (each chunk framed in the read buffer's room and written to a real
// socket) allocates nothing once the record's buffers have grown.
func TestStreamFramedWriteAllocs(t *testing.T) {
	client, server := tcpPair(t)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := server.Read(buf); err != nil {
				return
			}
		}
	}()
	src := newChunkedSource(sseChunk, 500)
	s := testStream(record.KindSSE, true, src)
	s.client = client
	bw := bufio.NewWriter(client)
	w := &chunkWriter{w: bw}
	run := func() {
		resetStream(s, src)
		if _, err := s.copyTo(w, bw); err != nil {
			t.Fatal(err)
		}
		bw.WriteString("0\r\n\r\n")
		bw.Flush()
	}
	run()
	if n := testing.AllocsPerRun(20, run); n != 0 {
		t.Errorf("%v allocations per 500-event stream, want 0", n)
	}
}

// TestPollCopyAllocatesNothing: an SSE body from a real TCP upstream,
// copied in the poller's callback (its events arriving in pieces, so that
// it waits between them), allocates nothing once warm: the callback is
// bound once per Stream.
func TestPollCopyAllocatesNothing(t *testing.T) {
	h := newPollHarness(t, record.KindSSE)
	go io.Copy(io.Discard, h.peer)
	parts := make([]string, 50)
	for i := range parts {
		parts[i] = string(sseChunk)
	}
	wire := chunked(parts...)
	next := make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		for range next {
			wrote <- writeSlowly(h.up, wire, 4<<10, 0)
		}
	}()
	defer close(next)
	s := h.s
	run := func() {
		s.body.reset(&s.rb, bodyChunked, 0)
		r := s.rec
		r.Chunks.Data, r.Chunks.Ends, r.Chunks.AtMS = r.Chunks.Data[:0], r.Chunks.Ends[:0], r.Chunks.AtMS[:0]
		r.ChunkCount, r.BytesOut, r.TTFT = 0, 0, record.None
		s.ttft.reset()
		s.copied = 0
		next <- struct{}{}
		if n, err := s.copyPolled(h.w, h.bw); err != nil || n != int64(50*len(sseChunk)) {
			t.Fatalf("copied %d, %v; want %d", n, err, 50*len(sseChunk))
		}
		if err := <-wrote; err != nil {
			t.Fatal(err)
		}
	}
	run()
	if n := testing.AllocsPerRun(20, run); n != 0 {
		t.Errorf("%v allocations per 50-event stream copied in the poller, want 0", n)
	}
}

// TestBodyMaskAllocations: masking a read allocates nothing.
func TestBodyMaskAllocations(t *testing.T) {
	r := &Route{Options: Options{ProviderKey: "sk-abc/def+123456"}, secret: "sk-abc/def+123456", keyQuery: "sk-abc%2Fdef%2B123456"}
	var m bodyMask
	m.start(r, 401)
	b := []byte(`{"error":"bad key sk-abc/def+123456"} sk-abc`)
	if n := testing.AllocsPerRun(100, func() { m.apply(b) }); n != 0 {
		t.Errorf("%v allocations per read", n)
	}
}

// TestSessionClockAllocs: looking at a session's messages for its clock
// allocates nothing.
func TestSessionClockAllocs(t *testing.T) {
	msgs := [][]byte{
		[]byte(`{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"UklGRg=="}`),
		[]byte(`{"client_content": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turn_complete": true}}`),
		[]byte(`{"type": "ConversationText", "role": "user", "content": "Hello"}`),
		[]byte(`{"setupComplete":{}}`),
		[]byte("\x00\x01\x02"),
	}
	if n := testing.AllocsPerRun(100, func() {
		for _, m := range msgs {
			restartsClock(record.DirClient, m)
			restartsClock(record.DirUpstream, m)
			isOutput(m)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}
