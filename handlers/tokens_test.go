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

// TestResponseTokensAcrossCaptureCut: capture stopped inside the usage
// event (max_capture_bytes, a read that ended in it); its rest is in the
// window's tail. The two
// halves are scanned as one: before, each was skipped as a cut object and
// the row had no tokens.
func TestResponseTokensAcrossCaptureCut(t *testing.T) {
	var chunks []string
	for i := 0; len(strings.Join(chunks, "")) < 4000; i++ {
		chunks = append(chunks, fmt.Sprintf("data: {\"choices\":[{\"delta\":{\"content\":\"word %d \"}}]}\n\n", i))
	}
	before := len(strings.Join(chunks, ""))
	usageEvent := `data: {"choices":[],"usage":{"prompt_tokens":11,"completion_tokens":22,"total_tokens":33}}` + "\n\n"
	// A read ends inside the usage event, and the next does not fit.
	limit := before + 40
	chunks = append(chunks, usageEvent[:40], usageEvent[40:]+"data: [DONE]\n\n")
	rec := record.Acquire(limit)
	defer record.Release(rec)
	rec.Kind, rec.Capture, rec.Path = record.KindSSE, true, "/v1/chat/completions"
	for i, c := range chunks {
		rec.AddChunk([]byte(c), time.Duration(i)*time.Millisecond)
	}
	if rec.Window == nil || len(rec.Chunks.Data) <= before || len(rec.Chunks.Data) >= before+len(usageEvent) {
		t.Fatalf("capture kept %d bytes (window %v): want the cut inside the usage event (%d..%d)", len(rec.Chunks.Data), rec.Window != nil, before, before+len(usageEvent))
	}
	in, out, ok := responseTokens(rec)
	if !ok || in != 11 || out != 22 {
		t.Fatalf("tokens %d/%d (ok %v), want 11/22", in, out, ok)
	}
}
