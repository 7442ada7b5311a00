package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stream-relay/stream-relay/app"
	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/record"
)

// stdout is where subcommands print; tests swap it.
var stdout io.Writer = os.Stdout

// stderr is where commands write notes beside their output (a test sets it).
var stderr io.Writer = os.Stderr

const showUsage = `usage: relay show REQUEST_ID [-config FILE] [-env-file FILE] [--json]

Prints the stored row of one request, REQUEST_ID being the X-Request-Id a
response carried. It looks where a row goes on its way: the WAL
(spool_dir/wal), the spool files, spool_dir/rejected, then ClickHouse when
storage.clickhouse.url is set. Flags may come before or after the id.

flags:
`

// showStatus documents show's exit statuses; the usage ends with it.
var showStatus = fmt.Sprintf(`
exit status:
  0  the row was found and printed
  %d  not found: every place was asked and none holds the row (a finished
     request's row is written within storage.clickhouse.flush_interval: try
     again in a moment)
  %d  the lookup could not be made (ClickHouse unreachable, its database or
     table missing, credentials refused; spool_dir exists but cannot be
     read), or a bad argument or configuration
`, exitFailed, exitShowError)

// runShow prints one stored request: relay show REQUEST_ID [-config FILE] [--json].
// Any failure but a clean miss exits with exitShowError.
func runShow(args []string) error {
	err := runShowTo(args, stdout)
	if err == nil || errors.Is(err, chlog.ErrNotFound) {
		return err
	}
	return &exitError{code: exitShowError, err: err}
}

// runShowTo is runShow printing to w. Flags may come before or after the id.
func runShowTo(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("relay show", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // -h prints the usage to w; errors point to it
	configPath := fs.String("config", "configs/config.yaml", "configuration file (YAML): where the relay stores rows")
	envFile := fs.String("env-file", ".env", "KEY=VALUE file loaded into the environment if present")
	asJSON := fs.Bool("json", false, "print the row as JSON (with the reassembled text, or a WebSocket session's frames)")
	var ids []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return printFlagUsage(w, fs, showUsage, showStatus)
			}
			return fmt.Errorf("show: %w (relay show -h)", err)
		}
		if fs.NArg() == 0 {
			break
		}
		ids = append(ids, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(ids) != 1 {
		return fmt.Errorf("show: want one request_id (the X-Request-Id a response carried), got %d: usage: relay show REQUEST_ID [-config FILE] [--json]", len(ids))
	}
	id := ids[0]
	if !chlog.ValidRequestID(id) {
		return fmt.Errorf("show: request_id=%q: must be 32 lower-case hex characters (the X-Request-Id header)", id)
	}

	if err := app.LoadEnvFile(*envFile); err != nil {
		return err
	}
	cfg, err := app.Load(*configPath)
	if err != nil {
		return err
	}
	ch := cfg.Storage.ClickHouse
	found, err := chlog.Find(context.Background(), chlog.FindOptions{
		URL:      ch.URL,
		URLs:     ch.URLs,
		Cluster:  ch.Cluster,
		Database: ch.Database,
		Table:    ch.Table,
		User:     ch.User,
		Password: ch.Password,
		SpoolDir: cfg.Storage.SpoolDir,
	}, id)
	if nf, ok := errors.AsType[*chlog.NotFoundError](err); ok {
		if lerr := lookupFailed(nf); lerr != nil {
			return fmt.Errorf("show: %w", lerr)
		}
		flush := ch.FlushInterval
		if flush == 0 {
			flush = time.Second
		}
		return fmt.Errorf("show: %w (a finished request's row is written within storage.clickhouse.flush_interval, %s: try again in a moment)", err, flush)
	}
	if err != nil {
		return fmt.Errorf("show: %w", err)
	}
	v := newShown(found)
	if *asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	return printShown(w, v)
}

// shown is the JSON shape of `relay show --json`: the stored row, bytes as
// text where they are valid UTF-8 (headers as the JSON objects they are),
// base64 otherwise (then the *_encoding field says "base64"), and what was
// made of the response.
type shown struct {
	FoundIn  string   `json:"found_in"`
	Rejected bool     `json:"rejected,omitempty"`
	Warnings []string `json:"warnings,omitempty"`

	// The stored row; the fields below with the same JSON names (headers,
	// bodies, chunks) replace its byte slices in the output.
	chlog.Row

	RequestHeaders         json.RawMessage `json:"request_headers"`
	ResponseHeaders        json.RawMessage `json:"response_headers"`
	RequestBody            string          `json:"request_body"`
	RequestBodyEncoding    string          `json:"request_body_encoding,omitempty"`
	ResponseChunks         []string        `json:"response_chunks"`
	ResponseChunksEncoding string          `json:"response_chunks_encoding,omitempty"`
	ResponseKind           string          `json:"response_kind"` // sse | body | raw | ws | none
	ResponseContentType    string          `json:"response_content_type"`
	ResponseCapturedBytes  int             `json:"response_captured_bytes"`
	Events                 []sseEvent      `json:"events,omitempty"`
	Text                   string          `json:"text"`
	// A WebSocket session's frames (response_kind ws): Frames[i]
	// describes ResponseChunks[i], which keeps the stored bytes, prefix
	// included.
	Frames []wsFrame `json:"frames,omitempty"`
	// Its OpenAI Realtime text, turn by turn (Text: the assistant's).
	Transcript []wsTurn `json:"transcript,omitempty"`

	requestBodyBytes, resp []byte // for the text view
}

func newShown(f *chlog.Found) *shown {
	r := &f.Row
	v := &shown{
		FoundIn: f.Where, Rejected: f.Rejected, Warnings: f.Warnings, Row: *r,
		RequestHeaders: jsonOrString(r.RequestHeaders), ResponseHeaders: jsonOrString(r.ResponseHeaders),
		requestBodyBytes: r.RequestBody,
	}
	// JSON carries the bytes as they are: a body cut at max_capture_bytes
	// inside a character is base64 too (as text its last bytes became
	// U+FFFD, and the stored bytes could not be had back).
	v.RequestBody, v.RequestBodyEncoding = textOrBase64(r.RequestBody)
	v.ResponseChunks = make([]string, len(r.Chunks))
	allText := true
	for _, c := range r.Chunks {
		allText = allText && utf8.Valid(c)
		v.resp = append(v.resp, c...)
		v.ResponseCapturedBytes += len(c)
	}
	for i, c := range r.Chunks {
		if allText {
			v.ResponseChunks[i] = string(c)
		} else {
			v.ResponseChunks[i] = base64.StdEncoding.EncodeToString(c)
		}
	}
	if !allText {
		v.ResponseChunksEncoding = "base64"
	}
	v.ResponseContentType = headerValue(r.ResponseHeaders, "content-type")
	switch {
	case isWSSession(r.Status, r.ResponseHeaders):
		// Its chunks are frames, its bytes_in the client's messages.
		v.ResponseKind = "ws"
		v.setWS(r)
	case len(v.resp) == 0:
		v.ResponseKind = "none"
	case binaryType(v.ResponseContentType) || !textType(v.ResponseContentType) && !utf8.Valid(withoutCutRune(v.resp)):
		// A text type with a byte that is no UTF-8 (a server's Latin-1)
		// is still text: its events are read, the byte shown escaped.
		v.ResponseKind = "raw"
	default:
		v.Events = parseSSE(v.resp)
		if len(v.Events) > 0 {
			v.ResponseKind = "sse"
			var text strings.Builder
			for _, e := range v.Events {
				text.WriteString(eventText(e.Data))
			}
			v.Text = text.String()
		} else {
			v.ResponseKind = "body"
			v.Text = eventText(string(v.resp))
		}
	}
	return v
}

// withoutCutRune is b without the first bytes of a multi-byte character
// its end cuts short: a capture stopped at max_capture_bytes, or a stream
// cut, between two reads that split a character, is still text.
func withoutCutRune(b []byte) []byte {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i]
			}
			break
		}
	}
	return b
}

// jsonOrString keeps a stored JSON object as it is; anything else becomes
// a JSON string.
func jsonOrString(b []byte) json.RawMessage {
	if len(b) > 0 && json.Valid(b) {
		return b
	}
	s, _ := json.Marshal(string(b))
	return s
}

// textOrBase64 returns b as text when it is UTF-8, else as base64.
func textOrBase64(b []byte) (s, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), "base64"
}

// textType reports content types whose bytes are text: events or JSON.
func textType(ct string) bool {
	ct = strings.ToLower(ct)
	return strings.HasPrefix(ct, "text/") || strings.Contains(ct, "json")
}

// binaryType reports content types whose bytes are not text to reassemble.
func binaryType(ct string) bool {
	ct = strings.ToLower(ct)
	for _, p := range []string{"audio/", "video/", "image/", "application/octet-stream"} {
		if strings.HasPrefix(ct, p) {
			return true
		}
	}
	return false
}

// headerValue returns the first value of name in a stored header object.
func headerValue(hdr []byte, name string) string {
	var found string
	walkHeaders(hdr, func(k, v string) bool {
		if strings.EqualFold(k, name) {
			found = v
			return false
		}
		return true
	})
	return found
}

// walkHeaders calls fn with each member of a stored header object, in
// stored order (duplicates kept), until fn returns false. It reports
// whether hdr was such an object.
func walkHeaders(hdr []byte, fn func(k, v string) bool) bool {
	dec := json.NewDecoder(bytes.NewReader(hdr))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return false
	}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return false
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return false
		}
		k, _ := kt.(string)
		s, ok := v.(string)
		if !ok {
			b, _ := json.Marshal(v)
			s = string(b)
		}
		if !fn(k, s) {
			return true
		}
	}
	return true
}

// sseEvent is one server-sent event: its name (empty for the default
// "message") and its data lines joined with "\n".
type sseEvent struct {
	Event string `json:"event,omitempty"`
	Data  string `json:"data"`
}

// parseSSE splits a whole response stream into events. Chunks may cut or
// join events anywhere; the caller passes their concatenation. A last event
// without its blank line (a stream cut short) is kept.
func parseSSE(b []byte) []sseEvent {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a byte order mark, which SSE readers drop
	var out []sseEvent
	var name string
	var data []string
	haveData := false
	dispatch := func() {
		if haveData {
			out = append(out, sseEvent{Event: name, Data: strings.Join(data, "\n")})
		}
		name, data, haveData = "", nil, false
	}
	s := string(b)
	for len(s) > 0 {
		i := strings.IndexAny(s, "\r\n")
		line := s
		if i >= 0 {
			line = s[:i]
			if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				i++
			}
			s = s[i+1:]
		} else {
			s = ""
		}
		if line == "" {
			dispatch()
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			data, haveData = append(data, value), true
		case "event":
			name = value
		}
	}
	dispatch()
	return out
}

// eventText returns the text one event payload (or a whole JSON answer)
// carries: OpenAI chat choices[].delta.content (or .message.content, .text),
// Anthropic content_block_delta delta.text (or a message's content[].text),
// OpenAI Responses response.output_text.delta delta (or a response
// object's output[].content[] output_text), Gemini
// candidates[].content.parts[].text (thought summaries left out). A JSON
// array (Gemini's streamGenerateContent without alt=sse) carries its
// elements' text, those of a cut array's whole elements included. Anything
// else, [DONE] included, carries none.
func eventText(payload string) string {
	if p := strings.TrimLeft(payload, " \t\r\n"); strings.HasPrefix(p, "[") {
		dec := json.NewDecoder(strings.NewReader(p))
		_, _ = dec.Token() // [
		var b strings.Builder
		for dec.More() {
			var el json.RawMessage
			if dec.Decode(&el) != nil {
				break
			}
			if len(el) > 0 && el[0] == '{' { // one level: nested arrays carry none
				b.WriteString(eventText(string(el)))
			}
		}
		return b.String()
	}
	var m struct {
		Candidates []struct {
			Content struct {
				Parts []struct {
					Text    string `json:"text"`
					Thought bool   `json:"thought"`
				} `json:"parts"`
			} `json:"content"`
		} `json:"candidates"`
		Type    string `json:"type"`
		Choices []struct {
			Delta   struct{ Content any } `json:"delta"`
			Message struct{ Content any } `json:"message"`
			Text    string                `json:"text"`
		} `json:"choices"`
		Delta json.RawMessage `json:"delta"`
		// A non-streamed Responses object's output items.
		Output []struct {
			Content []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
		} `json:"output"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	}
	if json.Unmarshal([]byte(payload), &m) != nil {
		return ""
	}
	var b strings.Builder
	for _, c := range m.Choices {
		for _, v := range []any{c.Delta.Content, c.Message.Content} {
			if s, ok := v.(string); ok {
				b.WriteString(s)
			}
		}
		b.WriteString(c.Text)
	}
	for _, c := range m.Candidates {
		for _, p := range c.Content.Parts {
			if !p.Thought {
				b.WriteString(p.Text)
			}
		}
	}
	// A Responses object's output items; the events that carry one
	// (response.completed, ...) have it under "response", not on top, so
	// a stream's text is not counted twice.
	for _, o := range m.Output {
		for _, c := range o.Content {
			if c.Type == "output_text" {
				b.WriteString(c.Text)
			}
		}
	}
	switch m.Type {
	case "content_block_delta":
		var d struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(m.Delta, &d) == nil {
			b.WriteString(d.Text)
		}
	case "response.output_text.delta":
		var s string
		if json.Unmarshal(m.Delta, &s) == nil {
			b.WriteString(s)
		}
	case "message":
		for _, c := range m.Content {
			if c.Type == "text" {
				b.WriteString(c.Text)
			}
		}
	}
	return b.String()
}

// maxOffsetsShown keeps the text view of a long audio stream readable; the
// JSON view has them all.
const maxOffsetsShown = 40

func printShown(w io.Writer, v *shown) error {
	var b strings.Builder
	line := func(label, format string, a ...any) {
		fmt.Fprintf(&b, "%-18s %s\n", label, fmt.Sprintf(format, a...))
	}
	fmt.Fprintf(&b, "request %s\n", v.RequestID)
	line("found in", "%s", v.FoundIn)
	if v.Rejected {
		line("", "REJECTED: this spool file can never be inserted as it is; it will not reach ClickHouse by itself (relay spool ls)")
	}
	for _, s := range v.Warnings {
		line("warning", "%s", s)
	}
	line("created_at", "%s", v.CreatedAt.UTC().Format("2006-01-02 15:04:05 MST"))
	line("route", "%s  %s %s -> %s", orDash(v.Route), v.Method, v.Path, orDash(v.Upstream))
	line("tenant", "%s  (key %s)", orDash(v.Tenant), orDash(v.KeyID))
	line("status", "%d", v.Status)
	line("error_type", "%s", orDash(v.ErrorType))
	line("model", "%s", orDash(v.Model))
	line("tokens", "in %s, out %s", optU64(v.TokensIn), optU64(v.TokensOut))
	first := "ttft" // the first token; of a raw (audio) answer, its first byte
	if v.ResponseKind == "raw" || binaryType(v.ResponseContentType) {
		first = "ttfa"
	}
	line("timings", "ttfb %s, %s %s, duration %d ms", optMS(v.TTFBms), first, optMS(v.TTFTms), v.DurationMS)
	if v.ResponseKind == "ws" {
		line("bytes", "in %d (client→upstream messages), out %d (upstream→client), %d frames", v.BytesIn, v.BytesOut, v.ChunkCount)
	} else {
		line("bytes", "in %d, out %d in %d chunks", v.BytesIn, v.BytesOut, v.ChunkCount)
	}
	line("chunk offsets ms", "%s", offsets(v.ChunkOffsetsMS))
	line("client", "%s  %s", orDash(v.ClientIP), orDash(v.UserAgent))
	line("instance", "%s", orDash(v.Instance))
	if v.Truncated || v.TruncatedReason != "" {
		what := "stream"
		if v.ResponseKind == "ws" {
			what = "session"
		}
		line("truncated", "yes (%s): capture stopped; the %s itself went on", orDash(v.TruncatedReason), what)
	}

	if v.ResponseKind == "ws" {
		printWS(&b, v)
		_, err := io.WriteString(w, termSafe(b.String()))
		return err
	}
	b.WriteString("\nrequest headers (as stored, secrets redacted)\n")
	printHeaders(&b, v.RequestHeaders)
	b.WriteString("\nresponse headers\n")
	printHeaders(&b, v.ResponseHeaders)

	b.WriteString("\nrequest body\n")
	switch {
	case len(v.requestBodyBytes) == 0 && v.BytesIn > 0:
		fmt.Fprintf(&b, "  (not stored: %d bytes; %s)\n", v.BytesIn, notStoredWhy(v))
	case len(v.requestBodyBytes) == 0:
		b.WriteString("  (empty)\n")
	case v.RequestBodyEncoding == "" || uint64(len(v.requestBodyBytes)) < v.BytesIn && utf8.Valid(withoutCutRune(v.requestBodyBytes)):
		// Text, or text cut inside a character at max_capture_bytes (the
		// terminal shows the cut byte as it can; --json keeps it).
		b.WriteString(indent(string(v.requestBodyBytes)))
		if uint64(len(v.requestBodyBytes)) < v.BytesIn {
			fmt.Fprintf(&b, "  (capture was truncated: %d of %d bytes)\n", len(v.requestBodyBytes), v.BytesIn)
		}
	default:
		fmt.Fprintf(&b, "  (%d bytes of binary; --json prints them as base64)\n", len(v.requestBodyBytes))
	}

	switch v.ResponseKind {
	case "none":
		b.WriteString("\nresponse\n")
		if v.BytesOut > 0 {
			fmt.Fprintf(&b, "  (not stored: %d bytes in %d chunks, content-type %s; %s)\n", v.BytesOut, v.ChunkCount, orDash(v.ResponseContentType), notStoredWhy(v))
		} else if v.ErrorType != "" && v.Status >= 400 {
			// The relay's own JSON error answer (a refusal, an upstream it
			// could not reach) is not stored as chunks.
			fmt.Fprintf(&b, "  (no upstream response body: the relay answered %d error_type %s itself)\n", v.Status, v.ErrorType)
		} else {
			b.WriteString("  (no response body)\n")
		}
	case "raw":
		fmt.Fprintf(&b, "\nresponse (raw)\n  %d bytes sent, %d captured in %d chunks, content-type %s\n",
			v.BytesOut, v.ResponseCapturedBytes, len(v.ResponseChunks), orDash(v.ResponseContentType))
	case "sse":
		fmt.Fprintf(&b, "\nresponse events (%d, from %d chunks)\n", len(v.Events), len(v.ResponseChunks))
		for i, e := range v.Events {
			name := ""
			if e.Event != "" {
				name = e.Event + " "
			}
			// A multi-line payload's further lines stay indented under it.
			fmt.Fprintf(&b, "  [%d] %s%s\n", i+1, name, strings.ReplaceAll(e.Data, "\n", "\n      "))
		}
		fmt.Fprintf(&b, "\ntext\n%s", indent(v.Text))
	case "body":
		fmt.Fprintf(&b, "\nresponse body (%d bytes, content-type %s)\n%s", v.ResponseCapturedBytes, orDash(v.ResponseContentType), indent(string(v.resp)))
		if v.Text != "" {
			fmt.Fprintf(&b, "\ntext\n%s", indent(v.Text))
		}
	}
	if (v.ResponseKind == "sse" || v.ResponseKind == "body") && v.Truncated {
		b.WriteString("  (capture was truncated: the text above is a prefix)\n")
	}
	_, err := io.WriteString(w, termSafe(b.String()))
	return err
}

// termSafe makes stored bytes safe to print on a terminal: control
// characters but newline, tab and a CR LF line end (ESC, a lone CR, BEL,
// DEL, the C1 range whose U+009B is a CSI) and bytes that are not UTF-8 (a character a capture cut
// in two) are shown escaped (\x1b, \u009b, \xe7), so that a body, a header
// or a model's text cannot move the cursor, rewrite what was printed,
// retitle the window or hide lines. --json prints the stored text as is
// (in JSON strings).
func termSafe(s string) string {
	unsafe := func(r rune) bool {
		return (r < 0x20 && r != '\n' && r != '\t' && r != '\r') || (r >= 0x7f && r <= 0x9f)
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == '\r' && strings.HasPrefix(s, "\r\n"):
			b.WriteByte('\r') // a CR LF line end only ends the line
		case r == utf8.RuneError && n == 1, r < 0x80 && unsafe(r), r == '\r':
			fmt.Fprintf(&b, "\\x%02x", s[0])
		case unsafe(r):
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteString(s[:n])
		}
		s = s[n:]
	}
	return b.String()
}

// refusals are the error types of requests the relay answered itself
// before reaching the upstream: their rows carry no bodies, whatever the
// route captures.
var refusals = []string{
	record.ErrUnauthorized, record.ErrForbidden, record.ErrNotFound, record.ErrBodyTooLarge,
	record.ErrRateLimited, record.ErrStorageOverloaded, record.ErrShuttingDown, record.ErrBadRequest,
}

// notStoredWhy says why a body the row counts bytes of is not in it.
func notStoredWhy(v *shown) string {
	switch {
	case slices.Contains(refusals, v.ErrorType):
		return "the request was refused before the upstream (error_type " + v.ErrorType + ")"
	case v.TruncatedReason != "":
		return "truncated_reason " + v.TruncatedReason
	}
	return "the route captures meta only"
}

func printHeaders(b *strings.Builder, raw json.RawMessage) {
	n := 0
	ok := walkHeaders(raw, func(k, v string) bool {
		fmt.Fprintf(b, "  %s: %s\n", k, v)
		n++
		return true
	})
	switch {
	case !ok:
		var s string
		if json.Unmarshal(raw, &s) == nil && s == "" {
			b.WriteString("  (none stored)\n")
			return
		}
		b.WriteString(indent(string(raw)))
	case n == 0:
		b.WriteString("  (none)\n")
	}
}

func indent(s string) string {
	if s == "" {
		return "  (empty)\n"
	}
	s = strings.TrimRight(s, "\n")
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func optMS(v *uint32) string {
	if v == nil {
		return "never"
	}
	return strconv.FormatUint(uint64(*v), 10) + " ms"
}

func optU64(v *uint64) string {
	if v == nil {
		return "unknown"
	}
	return strconv.FormatUint(*v, 10)
}

func offsets(o []uint32) string {
	if len(o) == 0 {
		return "-"
	}
	var b strings.Builder
	for i, x := range o {
		if i == maxOffsetsShown {
			fmt.Fprintf(&b, " ... (%d more; --json has all)", len(o)-i)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	}
	return b.String()
}
