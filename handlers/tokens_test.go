package handlers

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestResponseTokensPastCaptureLimit: capture stopped after the usage event
// was captured (an Anthropic stream whose message_stop crosses
// max_capture_bytes) still counts its usage. Before the fix only the first
// 2 KiB of what was captured (the window's head) and the bytes after the
// cut were scanned: the row got message_start's output_tokens of 1 instead
// of message_delta's 612.
func TestResponseTokensPastCaptureLimit(t *testing.T) {
	var chunks []string
	chunks = append(chunks, `event: message_start
data: {"type":"message_start","message":{"id":"m","usage":{"input_tokens":472,"output_tokens":1}}}

`)
	for i := range 60 { // well past the window's 2 KiB head
		chunks = append(chunks, fmt.Sprintf(`event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"word %d "}}

`, i))
	}
	chunks = append(chunks, `event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":612}}

`)
	last := "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
	captured := len(strings.Join(chunks, ""))
	if captured <= record.WindowHead {
		t.Fatalf("the captured part is %d bytes, want more than the window's head", captured)
	}
	rec := record.Acquire(captured) // the last chunk does not fit
	defer record.Release(rec)
	rec.Kind, rec.Capture, rec.Path = record.KindSSE, true, "/v1/messages"
	for i, c := range append(chunks, last) {
		rec.AddChunk([]byte(c), time.Duration(i)*time.Millisecond)
	}
	if rec.Window == nil || len(rec.Chunks.Data) != captured {
		t.Fatalf("capture kept %d bytes (window %v), want %d and a window for the rest", len(rec.Chunks.Data), rec.Window != nil, captured)
	}
	in, out, ok := responseTokens(rec)
	if !ok || in != 472 || out != 612 {
		t.Fatalf("tokens %d/%d (ok %v), want 472/612", in, out, ok)
	}
}
