package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/record"
)

// The row of a WebSocket session (a kind ws route; README "The row of a
// WebSocket session") is no request and response: bytes_in and bytes_out
// count the payloads of the client's and the upstream's messages, every
// response_chunks entry is one frame behind a two-byte prefix (direction
// '>' client→upstream or '<' upstream→client, then type: 't' text, 'b'
// binary, 'p' ping, 'o' pong, 'c' close, whose payload is stored as the
// code in decimal, a space and the reason; see record.AddMessage),
// chunk_offsets_ms their arrival, and the session's end is in the response
// headers (":ws-close-code", ":ws-close-reason", ":ws-closed-by").

// maxPayloadShown bounds a text payload in the text view; maxBinaryShown
// the bytes of a binary one shown in hex. The rest is counted ("... N more
// bytes"); --json has the stored bytes.
const (
	maxPayloadShown = 200
	maxBinaryShown  = 16
)

// maxFramesShown keeps the text view of a long session readable: past it
// the first framesHead and the last maxFramesShown-framesHead frames are
// shown (the end of a session says how it closed).
const (
	maxFramesShown = 200
	framesHead     = 150
)

// wsFrame is one stored frame of a session, in `relay show --json`'s
// "frames": frames[i] describes response_chunks[i].
type wsFrame struct {
	AtMS        *uint32 `json:"at_ms"`                // arrival at the relay, from the handshake
	Direction   string  `json:"direction"`            // "client" (client→upstream) or "upstream" (upstream→client)
	Type        string  `json:"type"`                 // text, binary, ping, pong, close; "unknown" for a chunk without a valid prefix
	Bytes       int     `json:"bytes"`                // the payload's stored size (a close frame's: the code as text, a space, the reason)
	CloseCode   int     `json:"close_code,omitempty"` // a close frame's code
	CloseReason string  `json:"close_reason,omitempty"`
	// AnswersRelay: a close frame that answers the relay's own close (the
	// relay ended the session, or the other side vanished or broke the
	// protocol and the relay closed this one): the side's part of the
	// relay's close handshake, not a close of its own.
	AnswersRelay bool `json:"answers_relay,omitempty"`

	payload []byte
}

// setWS fills the session's parts of v from its row r: the frames, the
// close frames that answer the relay's own, and the text of its OpenAI
// Realtime events.
func (v *shown) setWS(r *chlog.Row) {
	v.Frames = wsFrames(r.Chunks, r.ChunkOffsetsMS)
	markRelayAnswers(v.Frames, headerValue(r.ResponseHeaders, record.HeaderWSClosedBy), r.ErrorType)
	v.Transcript = wsTranscript(v.Frames)
	var text strings.Builder
	for _, turn := range v.Transcript {
		if turn.Role == "assistant" {
			if text.Len() > 0 {
				text.WriteByte('\n')
			}
			text.WriteString(turn.Text)
		}
	}
	v.Text = text.String()
}

// markRelayAnswers marks the close frames that answer the relay's own
// close frame. The relay sent one to both sides when it ended the session
// itself (closed by relay: shutting down, a message too big, idle, a side
// that broke the protocol), and to the side left when the other vanished
// (closed by client with client_closed, by upstream with upstream_reset).
// A side the relay sent its close to has no close frame of its own stored
// before it: a close frame read first would have ended the session as
// that side's (tunnel.go); so each of its close frames answers the
// relay's.
func markRelayAnswers(frames []wsFrame, closedBy, errType string) {
	toClient := closedBy == "relay" || (closedBy == "upstream" && errType == record.ErrUpstreamReset)
	toUpstream := closedBy == "relay" || (closedBy == "client" && errType == record.ErrClientClosed)
	for i := range frames {
		f := &frames[i]
		if f.Type == "close" && ((f.Direction == "client" && toClient) || (f.Direction == "upstream" && toUpstream)) {
			f.AnswersRelay = true
		}
	}
}

// A wsTurn is one utterance of an OpenAI Realtime session, in `relay show
// --json`'s "transcript": the assistant's text or audio transcript of one
// output item (its response.text.delta, response.output_text.delta,
// response.audio_transcript.delta or response.output_audio_transcript.delta
// events' deltas, joined), or the user's audio as transcribed
// (conversation.item.input_audio_transcription.completed).
type wsTurn struct {
	AtMS *uint32 `json:"at_ms"` // arrival of its first event, from the handshake
	Role string  `json:"role"`  // "assistant" or "user"
	Text string  `json:"text"`
}

// realtimeTextMarks are in every frame wsTranscript decodes (the ends of
// its event types' names, quoted): other frames, audio deltas above all,
// are not decoded.
var realtimeTextMarks = [][]byte{[]byte(`text.delta"`), []byte(`transcript.delta"`), []byte(`transcription.completed"`)}

// wsTranscript returns the turns of a session's upstream text frames that
// are OpenAI Realtime text events, in the order their first event came.
// Deltas join the turn of their item_id (a response's deltas may be
// interleaved with another item's events, such as the user's
// transcription, which comes late); a frame that is not such an event
// (other types, audio, a frame cut by the capture) adds nothing.
func wsTranscript(frames []wsFrame) []wsTurn {
	var turns []wsTurn
	var texts []*strings.Builder // texts[i]: turns[i].Text, being joined
	byItem := map[string]int{}   // role + item_id: index in turns
	for i := range frames {
		f := &frames[i]
		if f.Direction != "upstream" || f.Type != "text" {
			continue
		}
		if !containsAny(f.payload, realtimeTextMarks) {
			continue
		}
		var e struct {
			Type       string `json:"type"`
			ItemID     string `json:"item_id"`
			ResponseID string `json:"response_id"`
			Delta      string `json:"delta"`
			Transcript string `json:"transcript"`
		}
		if json.Unmarshal(f.payload, &e) != nil {
			continue
		}
		var role, text string
		switch e.Type {
		case "response.text.delta", "response.output_text.delta", "response.audio_transcript.delta", "response.output_audio_transcript.delta":
			role, text = "assistant", e.Delta
		case "conversation.item.input_audio_transcription.completed":
			role, text = "user", e.Transcript
		default:
			continue
		}
		key := role + " " + e.ItemID
		if e.ItemID == "" {
			key = role + " response " + e.ResponseID
		}
		j, ok := byItem[key]
		if !ok {
			j = len(turns)
			byItem[key] = j
			turns = append(turns, wsTurn{AtMS: f.AtMS, Role: role})
			texts = append(texts, new(strings.Builder))
		}
		texts[j].WriteString(text)
	}
	for i := range turns {
		turns[i].Text = texts[i].String()
	}
	return turns
}

func containsAny(p []byte, subs [][]byte) bool {
	for _, s := range subs {
		if bytes.Contains(p, s) {
			return true
		}
	}
	return false
}

// isWSSession reports whether a stored row is a WebSocket session's: its
// response headers carry the session's end (written once the tunnel ran),
// or its status is the 101 of an upgrade (a session given up before the
// tunnel started has no end recorded). A handshake the upstream or the
// relay refused is an HTTP answer and shown as one.
func isWSSession(status uint16, respHeaders []byte) bool {
	return status == 101 || headerValue(respHeaders, record.HeaderWSCloseCode) != ""
}

// wsFrames decodes the stored chunks of a session row; offsets are the
// row's chunk_offsets_ms, one per stored chunk.
func wsFrames(chunks [][]byte, offsets []uint32) []wsFrame {
	out := make([]wsFrame, len(chunks))
	for i, c := range chunks {
		f := &out[i]
		if i < len(offsets) {
			f.AtMS = &offsets[i]
		}
		f.Type = "unknown"
		f.payload = c
		if len(c) >= 2 {
			dir, typ := c[0], c[1]
			switch dir {
			case record.DirClient:
				f.Direction = "client"
			case record.DirUpstream:
				f.Direction = "upstream"
			}
			name := frameTypes[typ]
			if f.Direction != "" && name != "" {
				f.Type, f.payload = name, c[2:]
			} else {
				f.Direction = ""
			}
		}
		f.Bytes = len(f.payload)
		if f.Type == "close" {
			code, reason, _ := strings.Cut(string(f.payload), " ")
			if n, err := strconv.Atoi(code); err == nil {
				f.CloseCode, f.CloseReason = n, reason
			}
		}
	}
	return out
}

// frameTypes names the type byte of a frame's prefix.
var frameTypes = map[byte]string{
	record.MsgText: "text", record.MsgBinary: "binary", record.MsgPing: "ping", record.MsgPong: "pong", record.MsgClose: "close",
}

// closeCodeNames are RFC 6455's close codes (and the IANA registry's
// 1012-1015).
var closeCodeNames = map[int]string{
	1000: "normal closure", 1001: "going away", 1002: "protocol error", 1003: "unsupported data",
	1005: "no status received", 1006: "abnormal closure: no close frame", 1007: "invalid payload data",
	1008: "policy violation", 1009: "message too big", 1010: "mandatory extension", 1011: "internal error",
	1012: "service restart", 1013: "try again later", 1014: "bad gateway", 1015: "TLS handshake",
}

// closeText is a close code with its name and the reason quoted:
// `1000 (normal closure) "bye"`.
func closeText(code int, reason string) string {
	s := strconv.Itoa(code)
	if name := closeCodeNames[code]; name != "" {
		s += " (" + name + ")"
	}
	if reason != "" {
		s += " " + strconv.Quote(reason)
	}
	return s
}

// printWS prints a session row's sections after its summary: the
// handshake, how the session ended, and its frames.
func printWS(b *strings.Builder, v *shown) {
	b.WriteString("\nhandshake request headers (as stored, secrets redacted)\n")
	printHeaders(b, v.RequestHeaders)
	b.WriteString("\nhandshake response headers (the upstream's; :ws-* members record the session's end)\n")
	printHeaders(b, v.ResponseHeaders)
	if len(v.requestBodyBytes) > 0 { // a handshake carries none; show one if stored
		b.WriteString("\nhandshake request body\n")
		if v.RequestBodyEncoding == "" {
			b.WriteString(indent(v.RequestBody))
		} else {
			fmt.Fprintf(b, "  (%d bytes of binary; --json prints them as base64)\n", len(v.requestBodyBytes))
		}
	}

	b.WriteString("\nsession end\n")
	printWSEnd(b, v)
	printTranscript(b, v)

	fmt.Fprintf(b, "\nframes (%d relayed, %d stored)\n", v.ChunkCount, len(v.Frames))
	switch {
	case len(v.Frames) == 0 && v.ChunkCount > 0:
		why := "the route captures meta only"
		if v.TruncatedReason != "" {
			why = "truncated_reason " + v.TruncatedReason
		}
		fmt.Fprintf(b, "  (not stored: %s; the offsets above are their arrival times)\n", why)
		return
	case len(v.Frames) == 0:
		b.WriteString("  (none)\n")
		return
	}
	b.WriteString("     at ms  direction        type    payload\n")
	for i := range v.Frames {
		if len(v.Frames) > maxFramesShown && i == framesHead {
			left := len(v.Frames) - maxFramesShown
			fmt.Fprintf(b, "  ... %d frames left out (--json has all)\n", left)
		}
		if len(v.Frames) > maxFramesShown && i >= framesHead && i < len(v.Frames)-(maxFramesShown-framesHead) {
			continue
		}
		printFrame(b, &v.Frames[i])
	}
	if n := int(v.ChunkCount) - len(v.Frames); n > 0 && v.Truncated {
		fmt.Fprintf(b, "  (capture stopped here, %s: the session went on, %d more frames not stored)\n", orDash(v.TruncatedReason), n)
	}
}

// printWSEnd says who closed the session, with which code and reason.
func printWSEnd(b *strings.Builder, v *shown) {
	code, reason, by := headerValue(v.ResponseHeaders, record.HeaderWSCloseCode), headerValue(v.ResponseHeaders, record.HeaderWSCloseReason), headerValue(v.ResponseHeaders, record.HeaderWSClosedBy)
	if code == "" {
		b.WriteString("  (not recorded: the session never started relaying)\n")
		return
	}
	n, err := strconv.Atoi(code)
	if err != nil {
		fmt.Fprintf(b, "  closed by %s with %s %q\n", orDash(by), code, reason)
		return
	}
	fmt.Fprintf(b, "  closed by %s: %s\n", orDash(by), closeText(n, reason))
	switch {
	case n == 1006:
		b.WriteString("  (neither side nor the relay sent a close frame)\n")
	case by == "relay" && v.ErrorType == record.ErrClientProtocolError:
		b.WriteString("  (the client broke the protocol: the relay's 1002 to it, with what it broke; the upstream got 1002 \"client protocol error: ...\")\n")
	case by == "relay" && v.ErrorType == record.ErrUpstreamProtocolError:
		b.WriteString("  (the upstream broke the protocol: the relay's 1002 to it, with what it broke; the client got 1011 \"upstream protocol error: ...\")\n")
	case by == "relay":
		fmt.Fprintf(b, "  (the relay's own close frame, sent to both sides; error_type %s)\n", orDash(v.ErrorType))
	case by == "client" && v.ErrorType == record.ErrClientClosed:
		b.WriteString("  (the client vanished without a close frame: the relay sent this to the upstream)\n")
	case by == "upstream" && v.ErrorType == record.ErrUpstreamReset:
		b.WriteString("  (the upstream vanished without a close frame: the relay sent this to the client)\n")
	case by == "client":
		b.WriteString("  (the client's close frame, passed on to the upstream)\n")
	case by == "upstream":
		b.WriteString("  (the upstream's close frame, passed on to the client)\n")
	}
}

func printFrame(b *strings.Builder, f *wsFrame) {
	at := "-"
	if f.AtMS != nil {
		at = strconv.FormatUint(uint64(*f.AtMS), 10)
	}
	dir := "?"
	switch f.Direction {
	case "client":
		dir = "client→upstream"
	case "upstream":
		dir = "upstream→client"
	}
	note := ""
	if f.AnswersRelay {
		note = "  (answer to the relay's close)"
	}
	fmt.Fprintf(b, "  %8s  %-15s  %-6s  %s%s\n", at, dir, f.Type, framePayload(f), note)
}

// printTranscript prints the text of a session's OpenAI Realtime events
// (wsTranscript), one turn a line, its further lines indented under it;
// nothing for a session that has none.
func printTranscript(b *strings.Builder, v *shown) {
	if len(v.Transcript) == 0 {
		return
	}
	fmt.Fprintf(b, "\ntext (%d turns, from OpenAI Realtime events; the frames below keep each event)\n", len(v.Transcript))
	for _, turn := range v.Transcript {
		text := strings.TrimRight(turn.Text, "\n")
		if text == "" {
			text = "(empty)"
		}
		fmt.Fprintf(b, "  %-9s  %s\n", turn.Role, strings.ReplaceAll(text, "\n", "\n             "))
	}
	if v.Truncated {
		b.WriteString("  (capture was truncated: the text above is a prefix)\n")
	}
}

// framePayload is how a frame's payload is shown on its line: text
// escaped (newlines as \n, so that a frame stays one line; termSafe
// escapes the other control characters), binary as its size and its first
// bytes in hex, a close frame as its code and reason. Long payloads are cut
// ("... N more bytes").
func framePayload(f *wsFrame) string {
	p := f.payload
	switch {
	case f.Type == "close" && f.CloseCode != 0:
		return closeText(f.CloseCode, f.CloseReason)
	case len(p) == 0:
		return "(empty)"
	case f.Type == "binary" || f.Type == "unknown" || !utf8.Valid(p):
		n := min(len(p), maxBinaryShown)
		var s strings.Builder
		fmt.Fprintf(&s, "%d bytes:", len(p))
		for _, c := range p[:n] {
			fmt.Fprintf(&s, " %02x", c)
		}
		if len(p) > n {
			fmt.Fprintf(&s, " ... %d more bytes", len(p)-n)
		}
		return s.String()
	}
	n := len(p)
	if n > maxPayloadShown {
		n = maxPayloadShown
		for n > 0 && !utf8.RuneStart(p[n]) {
			n--
		}
	}
	s := strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(string(p[:n]))
	if n < len(p) {
		s += fmt.Sprintf(" ... %d more bytes", len(p)-n)
	}
	return s
}
