package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// startEchoWS is a WebSocket upstream on 127.0.0.1 on every path: it
// greets with a session.created event, echoes text as "echo:" + text and
// binary as it came, answers pings (the library's handler) and echoes a
// close frame's code.
func startEchoWS(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"session.created"}`))
		for {
			typ, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if typ == websocket.TextMessage {
				msg = append([]byte("echo:"), msg...)
			}
			if c.WriteMessage(typ, msg) != nil {
				return
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "ws://" + ln.Addr().String()
}

// dialWS opens a session through the relay and returns it with the
// X-Request-Id of its 101.
func dialWS(t *testing.T, url string) (*websocket.Conn, string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	c, resp, err := d.Dial(url, http.Header{"Authorization": {"Bearer sk-relay-show-test"}})
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, resp.Header.Get("X-Request-Id")
}

func readText(t *testing.T, c *websocket.Conn, want string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		typ, msg, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if typ == websocket.TextMessage && string(msg) == want {
			return
		}
	}
}

// TestShowWSSession runs WebSocket sessions through a running relay, stops
// it, and reads their rows back with relay show: each frame on its own
// line with its time, direction, type and payload, the close codes and who
// closed, and no request body line (bytes_in counts the client's messages,
// not a body).
func TestShowWSSession(t *testing.T) {
	up := startEchoWS(t)
	addr, cfg, stop := runShowRelay(t, fmt.Sprintf(`  - {name: realtime, path: /v1/realtime, upstream: %q, auth_env: QA_GEMINI_KEY, kind: ws}
  - {name: realtime-meta, path: /meta/realtime, upstream: %q, auth_env: QA_GEMINI_KEY, kind: ws, capture: meta}
`, up, up))

	// A session the client closes: text (with a newline and an escape),
	// binary, a ping.
	c, fullID := dialWS(t, "ws://"+addr+"/v1/realtime?model=gpt-realtime")
	readText(t, c, `{"type":"session.created"}`)
	if err := c.WriteMessage(websocket.TextMessage, []byte("hi\nthere\x1b[2J")); err != nil {
		t.Fatal(err)
	}
	readText(t, c, "echo:hi\nthere\x1b[2J")
	bin := make([]byte, 300)
	for i := range bin {
		bin[i] = byte(i)
	}
	if err := c.WriteMessage(websocket.BinaryMessage, bin); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if typ, msg, err := c.ReadMessage(); err != nil || typ != websocket.BinaryMessage || !bytes.Equal(msg, bin) {
		t.Fatalf("binary echo: type %d, %d bytes, %v", typ, len(msg), err)
	}
	if err := c.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 450)
	if err := c.WriteMessage(websocket.TextMessage, []byte(long)); err != nil {
		t.Fatal(err)
	}
	readText(t, c, "echo:"+long)
	if err := c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for { // until the upstream's answering close
		if _, _, err := c.ReadMessage(); err != nil {
			break
		}
	}

	// A session on a meta route, and one still open when the relay stops.
	m, metaID := dialWS(t, "ws://"+addr+"/meta/realtime")
	readText(t, m, `{"type":"session.created"}`)
	_ = m.WriteMessage(websocket.TextMessage, []byte("meta"))
	readText(t, m, "echo:meta")
	_ = m.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(5*time.Second))
	for {
		if _, _, err := m.ReadMessage(); err != nil {
			break
		}
	}
	h, heldID := dialWS(t, "ws://"+addr+"/v1/realtime")
	readText(t, h, `{"type":"session.created"}`)
	_ = h.WriteMessage(websocket.TextMessage, []byte("hold"))
	readText(t, h, "echo:hold")
	stopWithHeld(t, h, stop)

	out, err := show(t, fullID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out,
		"status             101",
		"model              gpt-realtime",
		"handshake request headers",
		"upstream→client  text    {\"type\":\"session.created\"}\n",
		"client→upstream  text    hi\\nthere\\x1b[2J\n",
		"upstream→client  text    echo:hi\\nthere\\x1b[2J\n",
		"client→upstream  binary  300 bytes: 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f ... 284 more bytes\n",
		"upstream→client  binary  300 bytes: 00 01 02",
		"client→upstream  ping    p1\n",
		"upstream→client  pong    p1\n",
		"client→upstream  text    "+strings.Repeat("x", maxPayloadShown)+" ... 250 more bytes\n",
		"client→upstream  close   1000 (normal closure) \"bye\"\n",
		"upstream→client  close   1000 (normal closure)\n",
		"closed by client: 1000 (normal closure) \"bye\"",
	)
	for _, bad := range []string{"request body", "not stored", "refused before the upstream", ">t", "<t"} {
		if strings.Contains(out, bad) {
			t.Errorf("output has %q:\n%s", bad, out)
		}
	}
	// One line per frame, each with its offset.
	var frames int
	for l := range strings.Lines(out) {
		if strings.Contains(l, "client→upstream  ") || strings.Contains(l, "upstream→client  ") {
			frames++
			if f := strings.Fields(l); len(f) < 3 || strings.Trim(f[0], "0123456789") != "" {
				t.Errorf("frame line without an offset: %q", l)
			}
		}
	}
	if frames != 11 {
		t.Errorf("%d frame lines, want 11:\n%s", frames, out)
	}

	out, err = show(t, metaID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "frames (5 relayed, 0 stored)", "(not stored: the route captures meta only", "closed by client: 1000 (normal closure)")
	if strings.Contains(out, "request body") {
		t.Errorf("a meta session shows a request body line:\n%s", out)
	}

	out, err = show(t, heldID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "error_type         shutting_down",
		"closed by relay: 1001 (going away) \"relay shutting down\"",
		"the relay's own close frame, sent to both sides; error_type shutting_down",
		"client→upstream  text    hold\n", "client→upstream  close   1001 (going away)")
	if strings.Contains(out, "refused before the upstream") || strings.Contains(out, "request body") {
		t.Errorf("a session the relay ended shows a refused request body:\n%s", out)
	}

	// --json keeps the stored bytes, prefixes included.
	out, err = show(t, fullID, "-config", cfg, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Kind     string    `json:"response_kind"`
		Encoding string    `json:"response_chunks_encoding"`
		Chunks   []string  `json:"response_chunks"`
		Frames   []wsFrame `json:"frames"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if got.Kind != "ws" || got.Encoding != "base64" || len(got.Chunks) != 11 || len(got.Frames) != 11 {
		t.Fatalf("--json: kind %q encoding %q, %d chunks, %d frames", got.Kind, got.Encoding, len(got.Chunks), len(got.Frames))
	}
	var sawBinary bool
	for i, s := range got.Chunks {
		c, _ := base64.StdEncoding.DecodeString(s)
		if bytes.Equal(c, append([]byte(">b"), bin...)) {
			sawBinary = got.Frames[i].Type == "binary" && got.Frames[i].Direction == "client" && got.Frames[i].Bytes == 300
		}
	}
	if !sawBinary {
		t.Errorf("--json lacks the client's binary frame as stored:\n%s", out)
	}
}

// wsRow is a session's record as upstream.Tunnel writes it: every frame
// through record.AddMessage behind its direction and type, a close frame's
// payload its code in decimal, a space and the reason, the session's end in
// the response headers.
func wsRow(capture bool, errType, closedBy, code, reason string, frames ...[3]string) *record.Record {
	r := record.Acquire(1 << 20)
	r.ID = showID()
	r.Start = time.Now().Truncate(time.Second)
	r.Route, r.Kind, r.Capture = "realtime", record.KindWS, capture
	r.Method, r.Path, r.Upstream, r.Status, r.ErrorType = "GET", "/v1/realtime", "wss://api.openai.com", 101, errType
	r.RequestHeaders = []byte(`{"upgrade":"websocket","authorization":"[redacted]"}`)
	r.ResponseHeaders = []byte(`{"x-upstream-session":"sess-1",":ws-close-code":"` + code + `",":ws-close-reason":"` + reason + `",":ws-closed-by":"` + closedBy + `"}`)
	for i, f := range frames {
		r.AddMessage(f[0][0], f[1][0], []byte(f[2]), time.Duration(10*(i+1))*time.Millisecond)
	}
	return r
}

// TestShowWSRows reads rows written as the tunnel writes them back from
// ClickHouse: a relay-ended session with binary frames, and one whose
// capture stopped at max_capture_bytes.
func TestShowWSRows(t *testing.T) {
	chURL, db := showDB(t)
	spool := t.TempDir()
	w := newWriter(t, chlog.Options{URL: chURL, Database: db, SpoolDir: spool})
	audio := string(bytes.Repeat([]byte{0xff, 0xf3, 0x00, 0x1b}, 500))
	ended := wsRow(true, record.ErrBodyTooLarge, "relay", "1009", "client message exceeds 4096 bytes",
		[3]string{">", "t", `{"type":"input_audio_buffer.append"}`},
		[3]string{"<", "b", audio},
		[3]string{"<", "p", ""},
		[3]string{">", "o", ""},
		[3]string{">", "c", "1009 client message exceeds 4096 bytes"},
		[3]string{"<", "c", "1009 "},
	)
	small := record.Acquire(60)
	small.ID, small.Start, small.Route, small.Kind, small.Capture = showID(), time.Now().Truncate(time.Second), "realtime", record.KindWS, true
	small.Method, small.Path, small.Status = "GET", "/v1/realtime", 101
	small.ResponseHeaders = []byte(`{":ws-close-code":"1000",":ws-close-reason":"",":ws-closed-by":"upstream"}`)
	small.AddMessage(record.DirClient, record.MsgText, []byte(strings.Repeat("a", 30)), 5*time.Millisecond)
	small.AddMessage(record.DirUpstream, record.MsgText, []byte(strings.Repeat("b", 40)), 9*time.Millisecond)
	small.AddMessage(record.DirUpstream, record.MsgClose, []byte("1000 "), 12*time.Millisecond)
	endedID, smallID := ended.IDString(), small.IDString()
	w.Write(ended)
	w.Write(small)
	if err := w.Close(ctx30(t)); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf("  spool_dir: %s\n  clickhouse:\n    url: %s\n    database: %s\n", spool, chURL, db))

	out, err := show(t, endedID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "found in           clickhouse "+db+".stream_logs",
		"bytes              in 74 (client→upstream messages), out 2005 (upstream→client), 6 frames",
		"frames (6 relayed, 6 stored)",
		"        10  client→upstream  text    {\"type\":\"input_audio_buffer.append\"}\n",
		"        20  upstream→client  binary  2000 bytes: ff f3 00 1b ff f3 00 1b ff f3 00 1b ff f3 00 1b ... 1984 more bytes\n",
		"        30  upstream→client  ping    (empty)\n",
		"        40  client→upstream  pong    (empty)\n",
		// Both sides' answers to the relay's 1009, marked as such.
		"        50  client→upstream  close   1009 (message too big) \"client message exceeds 4096 bytes\"  (answer to the relay's close)\n",
		"        60  upstream→client  close   1009 (message too big)  (answer to the relay's close)\n",
		"closed by relay: 1009 (message too big) \"client message exceeds 4096 bytes\"",
		"error_type body_too_large",
		"x-upstream-session: sess-1",
	)
	if strings.Contains(out, "refused before the upstream") || strings.Contains(out, "request body") {
		t.Errorf("a session shows a refused request body:\n%s", out)
	}

	out, err = show(t, smallID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "truncated          yes (max_capture_bytes)", "frames (3 relayed, 1 stored)",
		"client→upstream  text    "+strings.Repeat("a", 30)+"\n",
		"(capture stopped here, max_capture_bytes: the session went on, 2 more frames not stored)",
		"closed by upstream: 1000 (normal closure)", "the upstream's close frame, passed on to the client")
}

// TestWSFramesDecode: chunks without a valid prefix are shown as unknown
// bytes, not misread.
func TestWSFramesDecode(t *testing.T) {
	at := []uint32{1, 2, 3}
	f := wsFrames([][]byte{[]byte("x"), []byte("?t9"), []byte(">c1000 a b")}, at[:2])
	if f[0].Type != "unknown" || f[1].Type != "unknown" || f[1].Direction != "" || f[2].Type != "close" ||
		f[2].CloseCode != 1000 || f[2].CloseReason != "a b" || f[2].AtMS != nil || *f[1].AtMS != 2 {
		t.Errorf("frames: %+v", f)
	}
}

// TestShowWSLongSession: a long session shows its first and last frames
// (its end) with the count of those left out; a 101 row whose session
// never started relaying says its end was not recorded.
func TestShowWSLongSession(t *testing.T) {
	row := chlog.Row{Status: 101, ChunkCount: 250,
		ResponseHeaders: []byte(`{":ws-close-code":"1000",":ws-close-reason":"",":ws-closed-by":"client"}`)}
	for i := range 250 {
		row.Chunks = append(row.Chunks, fmt.Appendf(nil, ">tmsg-%d", i))
		row.ChunkOffsetsMS = append(row.ChunkOffsetsMS, uint32(i))
	}
	var b bytes.Buffer
	if err := printShown(&b, newShown(&chlog.Found{Row: row})); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	mustContain(t, out, "frames (250 relayed, 250 stored)", "       149  client→upstream  text    msg-149\n",
		"  ... 50 frames left out (--json has all)\n       200  client→upstream  text    msg-200\n", "msg-249\n")
	if strings.Contains(out, "msg-150\n") || strings.Contains(out, "msg-199\n") {
		t.Errorf("frames past the head shown:\n%s", out)
	}

	b.Reset()
	if err := printShown(&b, newShown(&chlog.Found{Row: chlog.Row{Status: 101, ErrorType: record.ErrClientClosed}})); err != nil {
		t.Fatal(err)
	}
	mustContain(t, b.String(), "session end\n  (not recorded: the session never started relaying)\n", "frames (0 relayed, 0 stored)\n  (none)\n")
}

// startRealtimeWS is an OpenAI Realtime-like upstream on 127.0.0.1: it
// greets with session.created and answers the client's text "go" with a
// response whose text events are interleaved with audio and with the
// transcription of the user's audio, which comes late as it does on the
// real API, then response.done.
func startRealtimeWS(t *testing.T) string {
	t.Helper()
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	events := []string{
		`{"type":"response.created","response":{"id":"resp_1"}}`,
		`{"type":"response.audio_transcript.delta","response_id":"resp_1","item_id":"item_a","output_index":0,"content_index":0,"delta":"It is "}`,
		`{"type":"response.audio.delta","response_id":"resp_1","item_id":"item_a","delta":"AAECAwQF"}`,
		`{"type":"conversation.item.input_audio_transcription.completed","item_id":"item_u","content_index":0,"transcript":"What's the weather?"}`,
		`{"type":"response.audio_transcript.delta","response_id":"resp_1","item_id":"item_a","delta":"sunny."}`,
		`{"type":"response.output_text.delta","response_id":"resp_1","item_id":"item_b","delta":"Bring "}`,
		`{"type":"response.text.delta","response_id":"resp_1","item_id":"item_b","delta":"a hat.\nOr not."}`,
		`{"type":"response.done","response":{"id":"resp_1","status":"completed"}}`,
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"session.created"}`))
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if string(msg) != "go" {
				continue
			}
			for _, e := range events {
				if c.WriteMessage(websocket.TextMessage, []byte(e)) != nil {
					return
				}
			}
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "ws://" + ln.Addr().String()
}

// TestShowWSRealtimeText runs Realtime sessions through a running relay
// that stores its rows in the real ClickHouse, and reads them back with
// relay show: the text of the response and transcription events, turn by
// turn in a text section (each turn joined from its item's deltas, the
// frames still listed one by one) and in --json ("text", "transcript");
// the close frame a side sent to answer the relay's own (the relay shut
// down) is marked as such, in the text view and in --json.
func TestShowWSRealtimeText(t *testing.T) {
	chURL, db := showDB(t)
	up := startRealtimeWS(t)
	addr := servicetest.FreeAddr(t)
	host, port, _ := strings.Cut(addr, ":")
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf(`server: {host: %s, port: %s, shutdown_grace: 5s}
auth:
  keys:
    - {key: sk-relay-show-test, tenant: t1}
routes:
  - {name: realtime, path: /v1/realtime, upstream: %q, auth_env: QA_GEMINI_KEY, kind: ws}
storage:
  spool_dir: %s
  clickhouse: {url: %q, database: %s, flush_interval: 200ms}
`, host, port, up, t.TempDir(), chURL, db)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := startRelayProcess(t, cfg)
	waitReady(t, "http://"+addr)

	c, id := dialWS(t, "ws://"+addr+"/v1/realtime?model=gpt-realtime")
	readText(t, c, `{"type":"session.created"}`)
	if err := c.WriteMessage(websocket.TextMessage, []byte("go")); err != nil {
		t.Fatal(err)
	}
	readText(t, c, `{"type":"response.done","response":{"id":"resp_1","status":"completed"}}`)
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(5*time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			break
		}
	}
	h, heldID := dialWS(t, "ws://"+addr+"/v1/realtime")
	readText(t, h, `{"type":"session.created"}`)
	stopWithHeld(t, h, stop)

	out, err := show(t, id, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "found in           clickhouse "+db+".stream_logs",
		"\ntext (3 turns, from OpenAI Realtime events; the frames below keep each event)\n"+
			"  assistant  It is sunny.\n"+
			"  user       What's the weather?\n"+
			"  assistant  Bring a hat.\n"+
			"             Or not.\n",
		`upstream→client  text    {"type":"response.audio_transcript.delta","response_id":"resp_1","item_id":"item_a","output_index":0,"content_index":0,"delta":"It is "}`+"\n",
		`upstream→client  text    {"type":"response.text.delta","response_id":"resp_1","item_id":"item_b","delta":"a hat.\nOr not."}`+"\n",
		"client→upstream  close   1000 (normal closure) \"bye\"\n",
		"upstream→client  close   1000 (normal closure)\n", // the ordinary handshake: not marked
		"frames (12 relayed, 12 stored)",
	)
	var got struct {
		Text       string    `json:"text"`
		Transcript []wsTurn  `json:"transcript"`
		Frames     []wsFrame `json:"frames"`
	}
	out, err = show(t, id, "-config", cfg, "--json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if got.Text != "It is sunny.\nBring a hat.\nOr not." || len(got.Transcript) != 3 ||
		got.Transcript[1].Role != "user" || got.Transcript[1].Text != "What's the weather?" || got.Transcript[0].AtMS == nil {
		t.Errorf("--json text %q transcript %+v", got.Text, got.Transcript)
	}
	for _, f := range got.Frames {
		if f.AnswersRelay {
			t.Errorf("a frame of a session the client closed is marked as answering the relay: %+v", f)
		}
	}

	out, err = show(t, heldID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "closed by relay: 1001 (going away) \"relay shutting down\"",
		"client→upstream  close   1001 (going away)  (answer to the relay's close)\n",
		"upstream→client  close   1001 (going away)  (answer to the relay's close)\n")
	if strings.Contains(out, "\ntext (") {
		t.Errorf("a session without Realtime text events shows a text section:\n%s", out)
	}
	out, err = show(t, heldID, "-config", cfg, "--json")
	if err != nil {
		t.Fatal(err)
	}
	got.Frames = nil
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	var answers int
	for _, f := range got.Frames {
		if f.AnswersRelay != (f.Type == "close") {
			t.Errorf("frame %+v: answers_relay %v", f, f.AnswersRelay)
		}
		if f.AnswersRelay {
			answers++
		}
	}
	if answers != 2 {
		t.Errorf("%d frames answer the relay's close, want 2:\n%s", answers, out)
	}
}

// TestShowWSProtocolErrorEnd: a session a side ended by breaking the
// protocol says who broke it and what each side got; the other side's
// answer to the relay's close is marked.
func TestShowWSProtocolErrorEnd(t *testing.T) {
	for _, tt := range []struct {
		errType, answer, want string
	}{
		{record.ErrClientProtocolError, "<c1002 ", `the client broke the protocol: the relay's 1002 to it, with what it broke; the upstream got 1002 "client protocol error: ..."`},
		{record.ErrUpstreamProtocolError, ">c1011 ", `the upstream broke the protocol: the relay's 1002 to it, with what it broke; the client got 1011 "upstream protocol error: ..."`},
	} {
		row := chlog.Row{Status: 101, ChunkCount: 2, ErrorType: tt.errType, ChunkOffsetsMS: []uint32{3, 9},
			Chunks:          [][]byte{[]byte(">thi"), []byte(tt.answer)},
			ResponseHeaders: []byte(`{":ws-close-code":"1002",":ws-close-reason":"bad MASK",":ws-closed-by":"relay"}`)}
		var b bytes.Buffer
		if err := printShown(&b, newShown(&chlog.Found{Row: row})); err != nil {
			t.Fatal(err)
		}
		mustContain(t, b.String(), `closed by relay: 1002 (protocol error) "bad MASK"`, tt.want, "(answer to the relay's close)\n")
	}
}

// stopWithHeld stops the relay (stop) while the session h is open and
// checks that h ends with the relay's 1001, which the library answers.
func stopWithHeld(t *testing.T, h *websocket.Conn, stop func()) {
	t.Helper()
	held := make(chan error, 1)
	go func() {
		for {
			if _, _, err := h.ReadMessage(); err != nil {
				held <- err
				return
			}
		}
	}()
	stop()
	if err := <-held; !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("held session ended with %v, want 1001", err)
	}
}
