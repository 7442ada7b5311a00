package upstream

import (
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// TestSessionOutput: which upstream messages stop a session's TTFT clock,
// in the shapes of the session APIs relayed.
func TestSessionOutput(t *testing.T) {
	for _, tt := range []struct {
		msg  string
		want bool
	}{
		// OpenAI Realtime.
		{`{"type":"response.output_audio.delta","event_id":"event_1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"UklGRg=="}`, true},
		{`{"type":"response.audio_transcript.delta","delta":"Hel"}`, true},
		{`{"type":"response.function_call_arguments.delta","delta":"{\"a"}`, true},
		{`{"type":"response.text.delta","delta":""}`, false},
		{`{"type":"response.created","response":{"output":[]}}`, false},
		{`{"type":"session.updated","session":{"instructions":"x","voice":"alloy"}}`, false},
		{`{"type":"conversation.item.created","item":{"content":[{"type":"input_text","text":"Hello"}]}}`, false},
		{`{"type":"conversation.item.input_audio_transcription.delta","delta":"Hi"}`, false},
		{`{"type":"input_audio_buffer.speech_stopped","audio_end_ms":1}`, false},
		{`{"type":"error","error":{"message":"x"}}`, false},
		{`{"type":"rate_limits.updated","rate_limits":[]}`, false},
		// ElevenLabs stream-input and agents.
		{`{"audio":"//uQxAAAAAAA","isFinal":null}`, true},
		{`{"type":"audio","audio_event":{"audio_base_64":"AAAA","event_id":1}}`, true},
		{`{"type":"agent_response","agent_response_event":{"agent_response":"Hi"}}`, true},
		{`{"type":"conversation_initiation_metadata","conversation_initiation_metadata_event":{}}`, false},
		{`{"type":"ping","ping_event":{"event_id":1}}`, false},
		{`{"type":"user_transcript","user_transcription_event":{"user_transcript":"hi"}}`, false},
		// Gemini Live (its JSON comes in binary frames too).
		{`{"setupComplete":{}}`, false},
		{`{"serverContent":{"inputTranscription":{"text":"hello"}}}`, false},
		{`{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm","data":"AAA"}}]}}}`, true},
		{`{"toolCall":{"functionCalls":[{"name":"f","args":{}}]}}`, true},
		{`{"type": "ping", "ping_event": {"event_id": 1}}`, false},
		{`{"type":"vad_score","vad_score_event":{"vad_score":0.9}}`, false},
		{`{"type":"internal_tentative_agent_response","tentative_agent_response_internal_event":{}}`, false},
		{`{"sessionResumptionUpdate":{"newHandle":"h"}}`, false},
		// Deepgram agents.
		{`{"type":"Welcome","request_id":"x"}`, false},
		{`{"type":"Warning","description":"x"}`, false},
		{`{"type":"SettingsApplied"}`, false},
		{`{"type":"ConversationText","role":"user","content":"Hello there"}`, false},
		{`{"type":"ConversationText","role":"assistant","content":"Hi!"}`, true},
		// Not JSON: audio, or words.
		{`echo:hi`, true},
		{"\x00\x01\x02", true},
		// A delta past the part looked at is not seen.
		{`{"type":"response.audio.delta","item_id":"` + strings.Repeat("x", 300) + `","delta":"AAAA"}`, false},
	} {
		if got := isOutput([]byte(tt.msg)); got != tt.want {
			t.Errorf("isOutput(%.80q) = %v, want %v", tt.msg, got, tt.want)
		}
	}
	for _, tt := range []struct {
		dir  byte
		msg  string
		want bool
	}{
		{record.DirClient, `{"type":"response.create","response":{}}`, true},
		{record.DirClient, `{"clientContent":{"turns":[],"turnComplete":true}}`, true},
		{record.DirClient, `{"realtimeInput":{"activityEnd":{}}}`, true},
		{record.DirClient, `{"type":"input_audio_buffer.append","audio":"x"}`, false},
		{record.DirClient, `{"type":"session.update","session":{}}`, false},
		{record.DirUpstream, `{"type":"input_audio_buffer.speech_stopped","audio_end_ms":1}`, true},
		{record.DirUpstream, `{"type":"ConversationText","role":"user","content":"Hello"}`, true},
		{record.DirUpstream, `{"type":"user_transcript","user_transcription_event":{"user_transcript":"hi"}}`, true},
		{record.DirUpstream, `{"type":"response.create"}`, false},
		// Spaced JSON (Python's json.dumps), snake case, and a turnComplete
		// after the turns' text.
		{record.DirClient, `{"client_content": {"turns": [{"role": "user", "parts": [{"text": "hi"}]}], "turn_complete": true}}`, true},
		{record.DirClient, `{"clientContent":{"turns":[{"role":"user","parts":[{"text":"` + strings.Repeat("a", 400) + `"}]}],"turnComplete":true}}`, true},
		{record.DirClient, `{"clientContent":{"turns":[],"turnComplete":false}}`, false},
		{record.DirUpstream, `{"type": "ConversationText", "role": "user", "content": "Hello"}`, true},
		// Realtime's echo of the user's item is no end of a turn.
		{record.DirUpstream, `{"type":"conversation.item.created","event_id":"e","item":{"id":"i","type":"message","role":"user","content":[]}}`, false},
	} {
		if got := restartsClock(tt.dir, []byte(tt.msg)); got != tt.want {
			t.Errorf("restartsClock(%c, %.60q) = %v, want %v", tt.dir, tt.msg, got, tt.want)
		}
	}
}
