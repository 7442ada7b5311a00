package upstream

import (
	"bytes"

	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/usage"
)

// A WebSocket session's TTFT runs from the client's latest request for
// output to the upstream's first output after it. Counting the first
// upstream message after the client's first one measured an
// acknowledgement: every OpenAI Realtime client begins with
// session.update, which the server answers at once with session.updated,
// so sessions whose audio came a second later showed 0.1 ms.
//
// The clock starts at the client's first data message and starts again,
// until the first output, at a client message asking for a response
// (Realtime's response.create) and at the upstream's word that the
// speaker stopped (input_audio_buffer.speech_stopped: with server-side
// voice detection the server answers on its own, and the client's
// microphone stream never pauses). An output is a binary message (audio),
// a text message that is no JSON (a plain-text protocol's words), or a
// JSON text message holding generated content by the Generic rules of
// package usage (a non-empty "delta", "audio", "text", "transcript",
// "data", an "inlineData" object ...) that is not one of Realtime's
// events about the session, the conversation (which repeat the client's
// own text), the input buffer, rate limits or an error.

// sessionEventHeadScan bounds the bytes searched for an event's type: it
// is the first member of Realtime's events.
const sessionEventHeadScan = 96

var (
	responseCreate = []byte(`"response.create"`)
	speechStopped  = []byte(`"input_audio_buffer.speech_stopped"`)
	typeMember     = []byte(`"type":"`)
	// notOutputTypes are the Realtime event type prefixes that carry no
	// generated output.
	notOutputTypes = [...][]byte{
		[]byte("session."), []byte("transcription_session."), []byte("conversation."),
		[]byte("input_audio_buffer."), []byte("rate_limits."), []byte("error"),
		[]byte("output_audio_buffer."),
	}
)

// restartsClock reports whether a data message of direction dir asks for
// output (the clock starts again from it).
func restartsClock(dir, typ byte, payload []byte) bool {
	if typ != record.MsgText {
		return false
	}
	head := payload[:min(len(payload), sessionEventHeadScan)]
	if dir == record.DirClient {
		return bytes.Contains(head, responseCreate)
	}
	return bytes.Contains(head, speechStopped)
}

// isOutput reports whether an upstream data message is generated output.
func isOutput(typ byte, payload []byte) bool {
	if t := bytes.TrimLeft(payload, " \t\r\n"); typ == record.MsgBinary || len(t) > 0 && t[0] != '{' && t[0] != '[' {
		return len(payload) > 0 // audio, or text that is no JSON event: the output itself
	}
	head := payload[:min(len(payload), sessionEventHeadScan)]
	if i := bytes.Index(head, typeMember); i >= 0 {
		v := head[i+len(typeMember):]
		for _, p := range &notOutputTypes {
			if bytes.HasPrefix(v, p) {
				return false
			}
		}
	}
	return usage.HasContent(usage.Generic, payload)
}
