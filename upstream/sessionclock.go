package upstream

import (
	"bytes"

	"github.com/stream-relay/stream-relay/record"
)

// A WebSocket session's TTFT runs from the end of the user's turn to the
// upstream's first output after it. Counting the first upstream message
// after the client's first one measured an acknowledgement: every OpenAI
// Realtime client begins with session.update, which the server answers at
// once with session.updated, so sessions whose audio came a second later
// showed 0.1 ms.
//
// The clock starts at the client's first data message, and starts again,
// until the first output, at a message that ends the user's turn: a
// client's Realtime response.create or Gemini Live turnComplete (in
// clientContent) or activityEnd, an upstream's Realtime
// input_audio_buffer.speech_stopped (with server-side voice detection the
// server answers on its own, and the client's microphone stream never
// pauses), ElevenLabs agents' user_transcript or Deepgram agents'
// ConversationText of role user.
//
// An output is any upstream data message but those known to be none: an
// event whose "type" is Realtime's is output only when it is a response.*
// event with a non-empty delta (session.*, conversation.*, which repeat
// the client's own text, input_audio_buffer.*, rate_limits.*, error,
// response.created ... are not); other APIs' acknowledgements, status
// events and the user's own words (notOutputTypes, notOutputKeys) are not.
// A binary message that is no JSON (audio) and a text message that is no
// JSON are output. Only the first sessionEventHead bytes of a message are
// looked at, but for a Gemini clientContent's turnComplete, which follows
// the turns' text.

// sessionEventHead bounds the bytes of a message looked at: an event's
// type, and a Realtime delta's "delta", come within them.
const sessionEventHead = 256

var (
	// realtimeNotOutput are the Realtime event type prefixes that carry no
	// generated output; a "response." one does when it has a delta.
	realtimeNotOutput = [...]string{
		"session.", "transcription_session.", "conversation.", "input_audio_buffer.",
		"output_audio_buffer.", "rate_limits.", "error",
	}
	// notOutputTypes are other session APIs' event types that are no
	// output: ElevenLabs agents', Deepgram agents'.
	notOutputTypes = [...]string{
		"conversation_initiation_metadata", "ping", "vad_score", "internal_tentative_agent_response", "user_transcript",
		"Welcome", "SettingsApplied", "UserStartedSpeaking", "AgentThinking", "Warning", "Error",
	}
	// notOutputKeys are Gemini Live's messages that are no output.
	notOutputKeys = [...][]byte{
		[]byte(`"setupComplete"`), []byte(`"inputTranscription"`), []byte(`"sessionResumptionUpdate"`), []byte(`"goAway"`),
	}
)

// sessionHead returns the part of a message looked at, and whether the
// message is JSON (an object).
func sessionHead(payload []byte) ([]byte, bool) {
	head := payload[:min(len(payload), sessionEventHead)]
	t := bytes.TrimLeft(head, " \t\r\n")
	return head, len(t) > 0 && t[0] == '{'
}

// memberValue returns the raw value after the first "key" (quotes
// included in key) in b, past the colon and white space, or nil.
func memberValue(b []byte, key string) []byte {
	for off := 0; off < len(b); {
		i := bytes.Index(b[off:], []byte(key))
		if i < 0 {
			return nil
		}
		j := skipBlanks(b, off+i+len(key))
		if j < len(b) && b[j] == ':' {
			return b[skipBlanks(b, j+1):]
		}
		off += i + 1
	}
	return nil
}

func skipBlanks(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// stringValue returns the string a member's raw value v holds, without
// its quotes (up to the next quote), or nil when v is no string.
func stringValue(v []byte) []byte {
	if len(v) == 0 || v[0] != '"' {
		return nil
	}
	v = v[1:]
	if i := bytes.IndexByte(v, '"'); i >= 0 {
		return v[:i]
	}
	return v
}

// isTrue reports whether the raw value v is true.
func isTrue(v []byte) bool { return bytes.HasPrefix(v, []byte("true")) }

// restartsClock reports whether a data message of direction dir ends the
// user's turn: the clock starts again from it.
func restartsClock(dir byte, payload []byte) bool {
	head, isJSON := sessionHead(payload)
	if !isJSON {
		return false
	}
	typ := stringValue(memberValue(head, `"type"`))
	if dir == record.DirClient {
		switch {
		case string(typ) == "response.create":
			return true
		case memberValue(head, `"clientContent"`) != nil || memberValue(head, `"client_content"`) != nil:
			// turnComplete follows the turns' text: the whole message.
			return isTrue(memberValue(payload, `"turnComplete"`)) || isTrue(memberValue(payload, `"turn_complete"`))
		}
		return memberValue(head, `"activityEnd"`) != nil || memberValue(head, `"activity_end"`) != nil
	}
	switch string(typ) {
	case "input_audio_buffer.speech_stopped", "user_transcript":
		return true
	case "ConversationText":
		return string(stringValue(memberValue(head, `"role"`))) == "user"
	}
	return false
}

// isOutput reports whether an upstream data message is generated output.
func isOutput(payload []byte) bool {
	head, isJSON := sessionHead(payload)
	if !isJSON {
		return len(payload) > 0 // audio, or a plain-text protocol's words
	}
	if typ := stringValue(memberValue(head, `"type"`)); typ != nil {
		if bytes.HasPrefix(typ, []byte("response.")) {
			d := stringValue(memberValue(head, `"delta"`))
			return len(d) > 0
		}
		for _, p := range &realtimeNotOutput {
			if bytes.HasPrefix(typ, []byte(p)) {
				return false
			}
		}
		for _, t := range &notOutputTypes {
			if string(typ) == t {
				return false
			}
		}
	}
	for _, k := range &notOutputKeys {
		if bytes.Contains(head, k) {
			return false
		}
	}
	return !restartsClock(record.DirUpstream, payload)
}
