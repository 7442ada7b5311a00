package upstream

import (
	"bytes"

	"github.com/stream-relay/stream-relay/record"
)

// A WebSocket session's TTFT runs from the client's latest request for
// output to the upstream's first output after it. Counting the first
// upstream message after the client's first one measured an
// acknowledgement: every OpenAI Realtime client begins with
// session.update, which the server answers at once with session.updated,
// so sessions whose audio came a second later showed 0.1 ms.
//
// The clock starts at the client's first data message, and starts again,
// until the first output, at a message that ends the user's turn: a
// client's Realtime response.create or Gemini Live turnComplete /
// activityEnd, an upstream's Realtime input_audio_buffer.speech_stopped
// (with server-side voice detection the server answers on its own, and
// the client's microphone stream never pauses), ElevenLabs agents'
// user_transcript or Deepgram agents' user ConversationText.
//
// An output is any upstream data message but those known to be none: a
// Realtime event (its type's first member) is output only when it is a
// response.* event with a non-empty delta (session.*, conversation.*,
// which repeat the client's own text, input_audio_buffer.*, rate_limits.*,
// error, response.created ... are not); and acknowledgements and the
// user's own words of the other session APIs (Gemini Live setupComplete
// and inputTranscription, Deepgram Welcome, SettingsApplied,
// UserStartedSpeaking, AgentThinking, ElevenLabs
// conversation_initiation_metadata and ping) are not. A binary message
// that is no JSON (audio) and a text message that is no JSON are output.
// Only the first sessionEventHead bytes of a message are looked at.

// sessionEventHead bounds the bytes of a message looked at: an event's
// type, and a Realtime delta's "delta", come within them.
const sessionEventHead = 256

var (
	// turnEnds restart the clock: [0] client messages, [1] upstream ones.
	turnEnds = [2][][]byte{
		{[]byte(`"response.create"`), []byte(`"turnComplete":true`), []byte(`"activityEnd"`)},
		{[]byte(`"input_audio_buffer.speech_stopped"`), []byte(`"user_transcript"`), []byte(`"role":"user"`)},
	}
	realtimeType = []byte(`"type":"`)
	// realtimeNotOutput are the Realtime event type prefixes that carry no
	// generated output.
	realtimeNotOutput = [...][]byte{
		[]byte("session."), []byte("transcription_session."), []byte("conversation."),
		[]byte("input_audio_buffer."), []byte("output_audio_buffer."), []byte("rate_limits."), []byte("error"),
	}
	realtimeResponse = []byte("response.")
	nonEmptyDelta    = []byte(`"delta":"`)
	// notOutput mark the other session APIs' messages that are no output.
	notOutput = [...][]byte{
		[]byte(`"setupComplete"`), []byte(`"inputTranscription"`), []byte(`"Welcome"`), []byte(`"SettingsApplied"`),
		[]byte(`"UserStartedSpeaking"`), []byte(`"AgentThinking"`), []byte(`"conversation_initiation_metadata"`),
		[]byte(`"type":"ping"`),
	}
)

// sessionHead returns the part of a message looked at, and whether the
// message is JSON (an object).
func sessionHead(payload []byte) ([]byte, bool) {
	head := payload[:min(len(payload), sessionEventHead)]
	t := bytes.TrimLeft(head, " \t\r\n")
	return head, len(t) > 0 && t[0] == '{'
}

// restartsClock reports whether a data message of direction dir ends the
// user's turn: the clock starts again from it.
func restartsClock(dir byte, payload []byte) bool {
	head, isJSON := sessionHead(payload)
	if !isJSON {
		return false
	}
	i := 0
	if dir == record.DirUpstream {
		i = 1
	}
	for _, m := range turnEnds[i] {
		if bytes.Contains(head, m) {
			return true
		}
	}
	return false
}

// isOutput reports whether an upstream data message is generated output.
func isOutput(payload []byte) bool {
	head, isJSON := sessionHead(payload)
	if !isJSON {
		return len(payload) > 0 // audio, or a plain-text protocol's words
	}
	if i := bytes.Index(head, realtimeType); i >= 0 {
		v := head[i+len(realtimeType):]
		if bytes.HasPrefix(v, realtimeResponse) {
			j := bytes.Index(head, nonEmptyDelta)
			return j >= 0 && j+len(nonEmptyDelta) < len(head) && head[j+len(nonEmptyDelta)] != '"'
		}
		for _, p := range &realtimeNotOutput {
			if bytes.HasPrefix(v, p) {
				return false
			}
		}
	}
	for _, m := range &notOutput {
		if bytes.Contains(head, m) {
			return false
		}
	}
	return !restartsClock(record.DirUpstream, payload)
}
