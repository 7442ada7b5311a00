package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// showDB creates a database unique to the test on the real ClickHouse and
// drops it at the end.
func showDB(t *testing.T) (chURL, db string) {
	t.Helper()
	chURL = servicetest.ClickHouse(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	db = "relay_show_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { servicetest.Exec(t, chURL, "DROP DATABASE IF EXISTS "+db) })
	return chURL, db
}

func showID() [record.IDLen]byte {
	var b [16]byte
	_, _ = rand.Read(b[:])
	var id [record.IDLen]byte
	hex.Encode(id[:], b[:])
	return id
}

// sseSplit is an OpenAI chat stream whose chunks cut events in the middle
// and join others: the text is "Hello, world!".
func sseSplit() *record.Record {
	r := record.Acquire(1 << 20)
	r.ID = showID()
	r.Start = time.Now().Truncate(time.Second)
	r.Route, r.Kind, r.Capture = "openai", record.KindSSE, true
	r.Tenant, r.KeyID, r.Instance = "tenant-a", "k1a2b3", "relay-1"
	r.Method, r.Path, r.Upstream = "POST", "/v1/chat/completions", "https://api.openai.com"
	r.Status, r.Model, r.TokensIn, r.TokensOut = 200, "gpt-4o", 12, 4
	r.TTFB, r.TTFT, r.Duration = 120*time.Millisecond, 180*time.Millisecond, 900*time.Millisecond
	r.RequestHeaders = []byte(`{"content-type":"application/json","authorization":"[redacted]"}`)
	r.ResponseHeaders = []byte(`{"content-type":"text/event-stream"}`)
	r.SetRequestBody([]byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hi"}]}`))
	r.BytesIn = int64(len(r.RequestBody))
	ev := func(s string) string {
		return `data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"` + s + `"}}]}` + "\n\n"
	}
	stream := ev("Hel") + ev("lo, ") + "data: {\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":null}\r\n\r\n" + ev("world") + ev("!") + "data: [DONE]\n\n"
	// Cut points: inside "data:", inside a JSON string, on a CR LF pair.
	cuts := []int{3, 50, 130, len(stream) - 20, len(stream)}
	prev := 0
	for i, c := range cuts {
		r.AddChunk([]byte(stream[prev:c]), time.Duration(180+100*i)*time.Millisecond)
		prev = c
	}
	return r
}

// rawAudio is a TTS row with captured binary bytes.
func rawAudio() *record.Record {
	r := record.Acquire(1 << 20)
	r.ID = showID()
	r.Start = time.Now().Truncate(time.Second)
	r.Route, r.Kind, r.Capture = "tts", record.KindRaw, true
	r.Method, r.Path, r.Status = "POST", "/v1/audio/speech", 200
	r.TTFB, r.TTFT, r.Duration = 50*time.Millisecond, 60*time.Millisecond, 400*time.Millisecond
	r.ResponseHeaders = []byte(`{"content-type":"audio/mpeg"}`)
	r.AddChunk([]byte{0xff, 0xfb, 0x90, 0x00, 0x01}, 60*time.Millisecond)
	r.AddChunk(bytes.Repeat([]byte{0xaa}, 995), 120*time.Millisecond)
	return r
}

// metaOnly is a row stored without bodies (storage over budget).
func metaOnly() *record.Record {
	r := record.Acquire(1 << 20)
	r.ID = showID()
	r.Start = time.Now().Truncate(time.Second)
	r.Route, r.Kind, r.Status, r.Method, r.Path = "openai", record.KindSSE, 200, "POST", "/v1/chat/completions"
	r.Truncated, r.TruncatedReason = true, record.TruncStorageBudget
	r.BytesIn = 80
	r.AddChunk([]byte("data: {}\n\n"), 30*time.Millisecond)
	return r
}

func writeConfig(t *testing.T, storage string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := `routes:
  - name: openai
    path: /v1/chat/completions
    upstream: https://api.openai.com
storage:
` + storage
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newWriter(t *testing.T, o chlog.Options) *chlog.Writer {
	t.Helper()
	o.Logger = slog.New(slog.DiscardHandler)
	w, err := chlog.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func ctx30(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// show runs `relay show args...` in process and returns what it printed.
func show(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runTo(append([]string{"show"}, args...), &out)
	if testing.Verbose() {
		t.Logf("relay show %s:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String(), err
}

// runTo is main's run with stdout swapped for out.
func runTo(args []string, out *bytes.Buffer) error {
	old := stdout
	stdout = out
	defer func() { stdout = old }()
	return run(args)
}

func mustContain(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestShowClickHouse(t *testing.T) {
	chURL, db := showDB(t)
	spool := t.TempDir()
	w := newWriter(t, chlog.Options{URL: chURL, Database: db, SpoolDir: spool})
	// A table from elsewhere may carry columns the relay does not know.
	servicetest.Exec(t, chURL, "ALTER TABLE "+db+".stream_logs ADD COLUMN extra_note String DEFAULT 'x', ADD COLUMN extra_n Nullable(Int64)")
	sse, raw, meta := sseSplit(), rawAudio(), metaOnly()
	sseID, rawID, metaID := sse.IDString(), raw.IDString(), meta.IDString()
	for _, r := range []*record.Record{sse, raw, meta} {
		w.Write(r)
	}
	if err := w.Close(ctx30(t)); err != nil {
		t.Fatal(err)
	}
	if n := servicetest.Query(t, chURL, db, "SELECT count() AS n FROM stream_logs")[0]["n"]; fmt.Sprint(n) != "3" {
		t.Fatalf("rows in ClickHouse: %v, want 3", n)
	}
	cfg := writeConfig(t, fmt.Sprintf("  spool_dir: %s\n  clickhouse:\n    url: %s\n    database: %s\n", spool, chURL, db))

	// Flags after the id.
	out, err := show(t, sseID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "request "+sseID, "found in           clickhouse "+db+".stream_logs",
		"status             200", "ttfb 120 ms, ttft 180 ms, duration 900 ms", "tokens             in 12, out 4",
		"chunk offsets ms   180 280 380 480 580", "route              openai  POST /v1/chat/completions",
		"authorization: [redacted]", `"content":"Hi"`,
		"response events (6, from 5 chunks)", "[6] [DONE]", "text\n  Hello, world!\n")

	// Flags before the id, --json.
	out, err = show(t, "--json", "-config", cfg, sseID)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		RequestID      string            `json:"request_id"`
		Status         int               `json:"status"`
		TTFT           *int              `json:"ttft_ms"`
		Text           string            `json:"text"`
		ResponseKind   string            `json:"response_kind"`
		RequestBody    string            `json:"request_body"`
		RequestHeaders map[string]string `json:"request_headers"`
		Chunks         []string          `json:"response_chunks"`
		Events         []struct{ Data string }
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out)
	}
	if got.RequestID != sseID || got.Status != 200 || got.TTFT == nil || *got.TTFT != 180 || got.Text != "Hello, world!" ||
		got.ResponseKind != "sse" || !strings.Contains(got.RequestBody, `"stream":true`) ||
		got.RequestHeaders["authorization"] != "[redacted]" || len(got.Chunks) != 5 || len(got.Events) != 6 {
		t.Errorf("--json: %+v", got)
	}

	out, err = show(t, rawID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "response (raw)", "1000 bytes sent, 1000 captured in 2 chunks, content-type audio/mpeg", "ttfa 60 ms")
	out, err = show(t, rawID, "-config", cfg, "-json")
	if err != nil {
		t.Fatal(err)
	}
	var rawGot struct {
		Kind     string   `json:"response_kind"`
		Encoding string   `json:"response_chunks_encoding"`
		Chunks   []string `json:"response_chunks"`
	}
	if err := json.Unmarshal([]byte(out), &rawGot); err != nil {
		t.Fatal(err)
	}
	if first, _ := base64.StdEncoding.DecodeString(rawGot.Chunks[0]); rawGot.Kind != "raw" || rawGot.Encoding != "base64" || !bytes.Equal(first, []byte{0xff, 0xfb, 0x90, 0x00, 0x01}) {
		t.Errorf("raw --json: %+v", rawGot)
	}

	out, err = show(t, metaID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "truncated          yes (storage_budget)", "(not stored: 10 bytes in 1 chunks, content-type -; truncated_reason storage_budget)")
}

func TestShowEmbeddedSpool(t *testing.T) {
	spool := t.TempDir()
	w := newWriter(t, chlog.Options{SpoolDir: spool})
	defer w.Close(ctx30(t))
	sse, raw := sseSplit(), rawAudio()
	sseID, rawID := sse.IDString(), raw.IDString()
	w.Write(sse)
	if err := w.Flush(ctx30(t)); err != nil {
		t.Fatal(err)
	}
	w.Write(raw) // a second spool file
	if err := w.Flush(ctx30(t)); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, "  spool_dir: "+spool+"\n")
	out, err := show(t, sseID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "found in           spool file "+spool, "text\n  Hello, world!\n")
	out, err = show(t, "-config", cfg, rawID)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "found in           spool file "+spool, "content-type audio/mpeg")
}

func TestShowWAL(t *testing.T) {
	spool := t.TempDir()
	// A long flush interval: the row stays in the current block, on disk
	// only in its WAL segment.
	w := newWriter(t, chlog.Options{SpoolDir: spool, Durability: chlog.DurabilityWAL, FlushInterval: time.Hour})
	defer w.Close(ctx30(t))
	other, sse := sseSplit(), sseSplit()
	id := sse.IDString()
	w.Write(other)
	w.Write(sse) // returns once fsync'd
	segs, _ := filepath.Glob(filepath.Join(spool, "wal", "*.wal"))
	spooled, _ := filepath.Glob(filepath.Join(spool, "*.native"))
	if len(segs) != 1 || len(spooled) != 0 {
		t.Fatalf("want one WAL segment and no spool file, have %v and %v", segs, spooled)
	}
	out, err := show(t, id, "-config", writeConfig(t, "  spool_dir: "+spool+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "request "+id, "found in           wal segment "+segs[0], "text\n  Hello, world!\n")
}

func TestShowErrors(t *testing.T) {
	spool := t.TempDir()
	cfg := writeConfig(t, "  spool_dir: "+spool+"\n")
	_, err := show(t, strings.Repeat("ab", 16), "-config", cfg)
	if !errors.Is(err, chlog.ErrNotFound) || !strings.Contains(err.Error(), "looked in: wal "+spool) ||
		!strings.Contains(err.Error(), "spool "+spool) || !strings.Contains(err.Error(), "try again") {
		t.Errorf("unknown id: %v", err)
	}
	for _, id := range []string{"xyz", strings.Repeat("AB", 16), strings.Repeat("a", 31), "'; DROP TABLE x; --" + strings.Repeat("a", 13)} {
		if _, err := show(t, id, "-config", cfg); err == nil || !strings.Contains(err.Error(), "request_id") {
			t.Errorf("id %q: %v", id, err)
		}
	}
	if _, err := show(t, "-config", cfg); err == nil || !strings.Contains(err.Error(), "request_id") {
		t.Errorf("no id: %v", err)
	}
	if _, err := show(t, strings.Repeat("ab", 16), strings.Repeat("cd", 16), "-config", cfg); err == nil {
		t.Error("two ids: no error")
	}
}

func TestResponseText(t *testing.T) {
	tests := []struct {
		name, stream, wantKind, wantText string
		wantEvents                       int
	}{
		{"anthropic", "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"content\":[]}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi \"}}\n\n" +
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"there\"}}\n\n" +
			"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", "sse", "Hi there", 4},
		{"openai responses", "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"ab\"}\n\n" +
			"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"c\"}\n\n", "sse", "abc", 2},
		{"cut short, CR line ends, comments", ": ping\r\rdata: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\r\rdata: {\"choices\":[{\"delta\":{\"content\":\"y\"}}]}", "sse", "xy", 2},
		{"multi-line data", "data: {\"choices\":\ndata: [{\"delta\":{\"content\":\"z\"}}]}\n\n", "sse", "z", 1},
		{"openai non-stream body", `{"object":"chat.completion","choices":[{"message":{"role":"assistant","content":"Whole answer"}}]}`, "body", "Whole answer", 0},
		{"anthropic non-stream body", `{"type":"message","content":[{"type":"text","text":"Whole"}]}`, "body", "Whole", 0},
		{"error body", `{"error":{"type":"rate_limited","message":"slow down"}}`, "body", "", 0},
		{"openai responses non-stream body", `{"id":"resp_1","object":"response","status":"completed","output":[{"type":"reasoning","summary":[]},{"type":"message","role":"assistant","content":[{"type":"output_text","annotations":[],"text":"Whole "},{"type":"output_text","text":"answer"}]}],"usage":{"input_tokens":8,"output_tokens":3}}`, "body", "Whole answer", 0},
		{"openai responses stream, completed event not counted twice", "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"ab\"}\n\n" +
			"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"object\":\"response\",\"output\":[{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"ab\"}]}]}}\n\n", "sse", "ab", 2},
		{"gemini generateContent body", `{"candidates":[{"content":{"parts":[{"text":"Hi "},{"text":"there"}],"role":"model"}}]}`, "body", "Hi there", 0},
		{"gemini array cut short", "[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"ab\"}]}}]},\r\n{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"c\"}]}}]},\r\n{\"candidates\":[{\"content\":{\"parts\":[{\"te", "body", "abc", 0},
		{"gemini sse, thought left out", "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hmm\",\"thought\":true}]}}]}\r\n\r\ndata: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"yes\"}]}}]}\r\n\r\n", "sse", "yes", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newShown(&chlog.Found{Row: chlog.Row{
				ResponseHeaders: []byte(`{"content-type":"text/event-stream"}`),
				Chunks:          [][]byte{[]byte(tt.stream[:len(tt.stream)/2]), []byte(tt.stream[len(tt.stream)/2:])},
			}})
			if v.ResponseKind != tt.wantKind || v.Text != tt.wantText || len(v.Events) != tt.wantEvents {
				t.Errorf("kind %q text %q events %d, want %q %q %d", v.ResponseKind, v.Text, len(v.Events), tt.wantKind, tt.wantText, tt.wantEvents)
			}
		})
	}
	// Invalid UTF-8 on a text content type is raw, and --json keeps its bytes.
	v := newShown(&chlog.Found{Row: chlog.Row{Chunks: [][]byte{{0xc3}, {0x28, 0xff}}}})
	if v.ResponseKind != "raw" || v.ResponseChunksEncoding != "base64" {
		t.Errorf("binary: %+v", v)
	}
	// A multi-byte character cut between two chunks is still text.
	v = newShown(&chlog.Found{Row: chlog.Row{Chunks: [][]byte{[]byte("data: {\"choices\":[{\"delta\":{\"content\":\"\xc3"), []byte("\xa9\"}}]}\n\n")}}})
	if v.ResponseKind != "sse" || v.Text != "é" {
		t.Errorf("split rune: kind %q text %q", v.ResponseKind, v.Text)
	}
}

// TestShowMultiLineEvent: the lines of a multi-line data field stay under
// their event, so that one reading "text" cannot pass for the text heading.
func TestShowMultiLineEvent(t *testing.T) {
	v := newShown(&chlog.Found{Row: chlog.Row{
		ResponseHeaders: []byte(`{"content-type":"text/event-stream"}`),
		Chunks:          [][]byte{[]byte("data: first\ndata: text\ndata: forged\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"real\"}}]}\n\n")},
	}})
	var out bytes.Buffer
	if err := printShown(&out, v); err != nil {
		t.Fatal(err)
	}
	mustContain(t, out.String(), "  [1] first\n      text\n      forged\n  [2] {", "\ntext\n  real\n")
	if strings.Contains(out.String(), "\ntext\nforged") {
		t.Errorf("an event's lines read as the text section:\n%s", out.String())
	}
}

// TestShowTextWithBadBytes: a text/event-stream answer with a byte that
// is no UTF-8 (a server's Latin-1 "é") is read as events (the byte shown
// escaped in them, replaced in the text), and its first token is a ttft (it was shown as raw audio, no
// events, "ttfa"); a stream that begins with a byte order mark has its
// events; a request body cut at max_capture_bytes inside a character is
// text, said to be cut (it was "binary").
func TestShowTextWithBadBytes(t *testing.T) {
	for _, tt := range []struct {
		name, chunk, want string
	}{
		{"latin-1", "data: {\"choices\":[{\"delta\":{\"content\":\"caf\xe9 \"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"ok\"}}]}\n\n", "\ntext\n  caf\ufffd ok\n"}, // the JSON decoder's replacement character
		{"bom", "\xef\xbb\xbfdata: {\"choices\":[{\"delta\":{\"content\":\"bom\"}}]}\n\n", "\ntext\n  bom\n"},
	} {
		v := newShown(&chlog.Found{Row: chlog.Row{
			Status: 200, ResponseHeaders: []byte(`{"content-type":"text/event-stream"}`), Chunks: [][]byte{[]byte(tt.chunk)},
		}})
		var out bytes.Buffer
		if err := printShown(&out, v); err != nil {
			t.Fatal(err)
		}
		if v.ResponseKind != "sse" {
			t.Errorf("%s: response kind %q, want sse", tt.name, v.ResponseKind)
		}
		mustContain(t, out.String(), tt.want)
	}
	body := []byte(`{"model":"m","messages":[{"content":"` + strings.Repeat("é", 20))
	body = body[:len(body)-1] // cut inside the last é
	v := newShown(&chlog.Found{Row: chlog.Row{Status: 200, RequestBody: body, BytesIn: uint64(len(body) + 100)}})
	// --json carries the stored bytes as they are: base64 (as text, the
	// cut character's byte became U+FFFD and was lost); the text view
	// still shows it as text.
	if dec, err := base64.StdEncoding.DecodeString(v.RequestBody); v.RequestBodyEncoding != "base64" || err != nil || !bytes.Equal(dec, body) {
		t.Fatalf("a body cut inside a character: encoding %q, %d bytes back (%v), %d stored", v.RequestBodyEncoding, len(dec), err, len(body))
	}
	var out bytes.Buffer
	if err := printShown(&out, v); err != nil {
		t.Fatal(err)
	}
	mustContain(t, out.String(), `{"model":"m"`, "(capture was truncated: ")
}

func FuzzParseSSE(f *testing.F) {
	for _, s := range []string{"data: x\n\n", "event: a\r\ndata: b\r\n\r\n", ":c\rdata\r\r", "data:", "\n\n\n", "data: {\"type\":\"content_block_delta\",\"delta\":\"x\"}\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		evs := parseSSE(b)
		if len(evs) > bytes.Count(b, []byte("data"))+1 {
			t.Fatalf("%d events from %q", len(evs), b)
		}
		for _, e := range evs {
			_ = eventText(e.Data)
		}
	})
}

// TestShowLookupFailed: when no ClickHouse node could be asked, show says
// so as the error, naming the node and the cause, and exits 2; when one
// answered, a miss is a clean not found (exit 1), whatever failed before.
func TestShowLookupFailed(t *testing.T) {
	chURL, db := showDB(t)
	spool := t.TempDir()
	w := newWriter(t, chlog.Options{URL: chURL, Database: db, SpoolDir: spool})
	w.Write(sseSplit()) // makes the database and table
	if err := w.Close(ctx30(t)); err != nil {
		t.Fatal(err)
	}
	closed, closed2 := closedClickHouse(t), closedClickHouse(t)
	for closed2 == closed { // the config refuses a node listed twice
		closed2 = closedClickHouse(t)
	}
	id := strings.Repeat("cd", 16)
	tests := []struct {
		name, clickhouse string
		code             int
		want             []string
	}{
		{"unreachable", "    url: " + closed + "\n    database: " + db + "\n    password: pw-not-shown\n", exitShowError,
			[]string{"could not be looked up", "clickhouse " + db + ".stream_logs at " + closed + ": ", "connection refused", "looked in: wal " + spool}},
		{"database missing", "    url: " + chURL + "\n    database: " + db + "_missing\n", exitShowError,
			[]string{"could not be looked up", "clickhouse " + db + "_missing.stream_logs at " + chURL + ": ", "code 81"}},
		{"table missing", "    url: " + chURL + "\n    database: " + db + "\n    table: no_such_table\n", exitShowError,
			[]string{"could not be looked up", db + ".no_such_table at " + chURL, "code 60"}},
		{"user unknown", "    url: " + chURL + "\n    database: " + db + "\n    user: relay_show_test_nobody\n", exitShowError,
			[]string{"could not be looked up", "relay_show_test_nobody"}},
		{"every node down", "    urls: [" + closed + ", " + closed2 + "]\n    database: " + db + "\n", exitShowError,
			[]string{"could not be looked up", "at " + closed + ": ", "; clickhouse " + db + ".stream_logs at " + closed2 + ": "}},
		{"clean miss", "    url: " + chURL + "\n    database: " + db + "\n", exitFailed,
			[]string{"not found", "try again"}},
		{"first node down, second answers", "    urls: [" + closed + ", " + chURL + "]\n    database: " + db + "\n", exitFailed,
			[]string{"not found", "failed: clickhouse: ", "try again"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := writeConfig(t, "  spool_dir: "+spool+"\n  clickhouse:\n"+tt.clickhouse)
			_, err := show(t, id, "-config", cfg)
			if err == nil {
				t.Fatal("no error")
			}
			if got := exitCode(err); got != tt.code {
				t.Errorf("exit %d, want %d: %v", got, tt.code, err)
			}
			mustContain(t, err.Error(), tt.want...)
			if notFound := errors.Is(err, chlog.ErrNotFound); notFound != (tt.code == exitFailed) {
				t.Errorf("errors.Is(ErrNotFound) = %v: %v", notFound, err)
			}
			if tt.code == exitShowError && strings.Contains(err.Error(), "try again") || strings.Contains(err.Error(), "pw-not-shown") {
				t.Errorf("error: %v", err)
			}
		})
	}
}

// refused is a row of a request the relay refused before the upstream on a
// route that captures bodies: none stored, bytes_in counted.
func refused(errType string, status uint16) chlog.Row {
	return chlog.Row{Route: "openai", Status: status, ErrorType: errType, BytesIn: 76}
}

func TestShowNotStoredWhy(t *testing.T) {
	tests := []struct {
		name string
		row  chlog.Row
		want string
	}{
		{"unauthorized", refused(record.ErrUnauthorized, 401), "(not stored: 76 bytes; the request was refused before the upstream (error_type unauthorized))"},
		{"forbidden", refused(record.ErrForbidden, 403), "refused before the upstream (error_type forbidden)"},
		{"no route", refused(record.ErrNotFound, 404), "refused before the upstream (error_type not_found)"},
		{"body too large", refused(record.ErrBodyTooLarge, 413), "refused before the upstream (error_type body_too_large)"},
		{"rate limited", refused(record.ErrRateLimited, 429), "refused before the upstream"},
		{"storage overloaded", refused(record.ErrStorageOverloaded, 503), "refused before the upstream"},
		{"shutting down", refused(record.ErrShuttingDown, 503), "refused before the upstream"},
		{"bad request", refused(record.ErrBadRequest, 400), "refused before the upstream"},
		{"meta route", chlog.Row{Route: "openai", Status: 200, BytesIn: 76}, "(not stored: 76 bytes; the route captures meta only)"},
		{"upstream error on a meta route", chlog.Row{Status: 500, ErrorType: record.ErrUpstreamStatus, BytesIn: 76}, "the route captures meta only"},
		{"storage budget", chlog.Row{Status: 200, BytesIn: 76, Truncated: true, TruncatedReason: record.TruncStorageBudget}, "(not stored: 76 bytes; truncated_reason storage_budget)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := printShown(&b, newShown(&chlog.Found{Row: tt.row})); err != nil {
				t.Fatal(err)
			}
			_, body, _ := strings.Cut(b.String(), "\nrequest body\n")
			line, _, _ := strings.Cut(body, "\n")
			if !strings.Contains(line, tt.want) {
				t.Errorf("request body line %q lacks %q", line, tt.want)
			}
		})
	}
}

// TestShowRefused: a 401 row stored by the writer, read back from the spool.
func TestShowRefused(t *testing.T) {
	spool := t.TempDir()
	w := newWriter(t, chlog.Options{SpoolDir: spool})
	r := record.Acquire(1 << 20)
	r.ID = showID()
	id := r.IDString()
	r.Start = time.Now().Truncate(time.Second)
	r.Route, r.Kind, r.Capture = "openai", record.KindSSE, true
	r.Method, r.Path, r.Status, r.ErrorType = "POST", "/v1/chat/completions", 401, record.ErrUnauthorized
	r.BytesIn = 76
	w.Write(r)
	if err := w.Close(ctx30(t)); err != nil {
		t.Fatal(err)
	}
	out, err := show(t, id, "-config", writeConfig(t, "  spool_dir: "+spool+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "error_type         unauthorized", "(not stored: 76 bytes; the request was refused before the upstream (error_type unauthorized))")
	if strings.Contains(out, "meta only") {
		t.Errorf("a refused request is not meta only:\n%s", out)
	}
}

// TestShowRelayAnswered: a row whose answer the relay wrote itself (no
// upstream body: a refusal, an upstream it could not reach) says so where
// the response goes, not "(no response body)" as if the client got none.
func TestShowRelayAnswered(t *testing.T) {
	for _, tc := range []struct {
		row  chlog.Row
		want string
	}{
		{chlog.Row{Route: "openai", Status: 502, ErrorType: record.ErrUpstreamConfig}, "(no upstream response body: the relay answered 502 error_type upstream_config itself)"},
		{refused(record.ErrUnauthorized, 401), "(no upstream response body: the relay answered 401 error_type unauthorized itself)"},
		{chlog.Row{Route: "openai", Status: 200}, "(no response body)"},
	} {
		var b bytes.Buffer
		if err := printShown(&b, newShown(&chlog.Found{Row: tc.row})); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), tc.want) {
			t.Errorf("status %d %s: output lacks %q:\n%s", tc.row.Status, tc.row.ErrorType, tc.want, b.String())
		}
	}
}
