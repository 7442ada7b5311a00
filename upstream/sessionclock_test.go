package upstream

import (
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// TestSessionOutput: which upstream messages stop a session's TTFT clock.
func TestSessionOutput(t *testing.T) {
	for _, tt := range []struct {
		typ  byte
		msg  string
		want bool
	}{
		{record.MsgText, `{"type":"response.output_audio.delta","event_id":"e","delta":"UklGRg=="}`, true},
		{record.MsgText, `{"type":"response.audio_transcript.delta","delta":"Hel"}`, true},
		{record.MsgText, `{"type":"response.text.delta","delta":""}`, false},
		{record.MsgText, `{"type":"session.updated","session":{"instructions":"x","voice":"alloy"}}`, false},
		{record.MsgText, `{"type":"conversation.item.created","item":{"content":[{"type":"input_text","text":"Hello"}]}}`, false},
		{record.MsgText, `{"type":"conversation.item.input_audio_transcription.delta","delta":"Hi"}`, false},
		{record.MsgText, `{"type":"error","error":{"message":"x"}}`, false},
		{record.MsgText, `{"type":"response.created","response":{"output":[]}}`, false},
		{record.MsgText, `{"audio":"//uQxAAAAAAA","isFinal":null}`, true}, // ElevenLabs stream-input
		{record.MsgText, `{"isFinal":true}`, false},
		{record.MsgText, `{"setupComplete":{}}`, false}, // Gemini Live
		{record.MsgText, `{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm","data":"AAA"}}]}}}`, true},
		{record.MsgText, `echo:hi`, true},
		{record.MsgBinary, "\x00\x01", true},
	} {
		if got := isOutput(tt.typ, []byte(tt.msg)); got != tt.want {
			t.Errorf("isOutput(%q) = %v, want %v", tt.msg, got, tt.want)
		}
	}
	if !restartsClock(record.DirClient, record.MsgText, []byte(`{"type":"response.create","response":{}}`)) ||
		!restartsClock(record.DirUpstream, record.MsgText, []byte(`{"type":"input_audio_buffer.speech_stopped","audio_end_ms":1}`)) ||
		restartsClock(record.DirClient, record.MsgText, []byte(`{"type":"input_audio_buffer.append","audio":"x"}`)) {
		t.Error("restartsClock")
	}
}
