package app

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// TestWSRealtimeTTFT: a Realtime session's TTFT runs from the request for
// output to the first audio, not from the client's first message to the
// server's first answer: every Realtime client sends session.update first,
// answered at once, and the row said 0.1 ms for audio that came after
// seconds. With server-side voice detection (no response.create; the
// microphone keeps streaming) the clock starts at speech_stopped.
func TestWSRealtimeTTFT(t *testing.T) {
	// The client pauses before it asks (or speaks); the upstream thinks
	// before it answers. A clock from the client's first message counts
	// the pause.
	const think, pause = 300 * time.Millisecond, 3 * time.Second
	upg := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/realtime", func(w http.ResponseWriter, r *http.Request) {
		c, err := upg.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		send := func(s string) { _ = c.WriteMessage(websocket.TextMessage, []byte(s)) }
		answer := func() {
			time.Sleep(think)
			send(`{"type":"response.created","event_id":"e2","response":{"id":"resp_1","status":"in_progress","output":[]}}`)
			send(`{"type":"response.output_audio.delta","event_id":"e3","delta":"UklGRiQAAABXQVZF"}`)
			send(`{"type":"response.done","event_id":"e4","response":{"usage":{"input_tokens":5,"output_tokens":7}}}`)
		}
		send(`{"type":"session.created","event_id":"e0","session":{"id":"sess_1","instructions":"Be brief."}}`)
		appends := 0
		for {
			_, m, err := c.ReadMessage()
			if err != nil {
				return
			}
			switch s := string(m); {
			case strings.Contains(s, `"session.update"`):
				send(`{"type":"session.updated","event_id":"e1","session":{"id":"sess_1","instructions":"Be brief.","voice":"alloy"}}`)
			case strings.Contains(s, `"conversation.item.create"`):
				send(`{"type":"conversation.item.created","event_id":"e5","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"Hello there"}]}}`)
			case strings.Contains(s, `"response.create"`):
				go answer()
			case strings.Contains(s, `"input_audio_buffer.append"`):
				if appends++; appends == 3 {
					send(`{"type":"input_audio_buffer.speech_stopped","event_id":"e6","audio_end_ms":1200}`)
					send(`{"type":"input_audio_buffer.committed","event_id":"e7"}`)
					go answer()
				}
			}
		}
	})
	r := startWSRelayFor(t, mux)

	for _, vad := range []bool{false, true} {
		c, resp, err := dialWS(t, r.base, relayKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		readMsg(t, c) // session.created
		write := func(s string) {
			if err := c.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
				t.Fatal(err)
			}
		}
		write(`{"type":"session.update","session":{"voice":"alloy"}}`)
		readMsg(t, c) // session.updated
		time.Sleep(pause)
		if vad {
			// The microphone streams on while the server answers.
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range 12 {
					if c.WriteMessage(websocket.TextMessage, []byte(`{"type":"input_audio_buffer.append","audio":"AAAAAAAA"}`)) != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			for {
				if _, m := readMsg(t, c); strings.Contains(m, "response.done") {
					break
				}
			}
			<-done
		} else {
			write(`{"type":"conversation.item.create","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"Hello there"}]}}`)
			readMsg(t, c) // conversation.item.created: the client's own text, repeated
			write(`{"type":"response.create"}`)
			for range 3 {
				readMsg(t, c)
			}
		}
		_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
		_, _ = readClose(t, c, 10*time.Second)
		_ = c.Close()
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		// Not the pause before the request for output; and, when the
		// client asked (the relay notes response.create before the
		// upstream gets it), at least the upstream's thinking time. With
		// voice detection the clock starts at speech_stopped as the relay
		// read it, which may be later than the upstream sent it.
		if row.TTFT <= 0 || row.TTFT >= pause || !vad && row.TTFT < think {
			t.Errorf("voice detection %v: ttft %v, want below the client's %v pause (and from %v without voice detection)", vad, row.TTFT, pause, think)
		}
		if row.TokensIn != 5 || row.TokensOut != 7 {
			t.Errorf("voice detection %v: tokens %d/%d", vad, row.TokensIn, row.TokensOut)
		}
	}
}
