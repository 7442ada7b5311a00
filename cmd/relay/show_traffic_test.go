package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// showUpstream answers Gemini's streamGenerateContent as Google does:
// SSE events with alt=sse, else one JSON array sent in pieces; OpenAI
// Responses without stream (one response object); and Anthropic messages
// whose text carries terminal control sequences.
func showUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	parts := []string{"Hel", "lo ", "wor", "ld"}
	chunk := func(i int) string {
		usage := `{"promptTokenCount":11,"totalTokenCount":11}`
		if i == len(parts)-1 {
			usage = `{"promptTokenCount":11,"candidatesTokenCount":7,"thoughtsTokenCount":2,"totalTokenCount":20}`
		}
		return `{"candidates":[{"content":{"parts":[{"text":"` + parts[i] + `"}],"role":"model"},"index":0}],"usageMetadata":` + usage + `,"modelVersion":"gemini-2.0-flash"}`
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		fl := w.(http.Flusher)
		switch {
		case strings.HasSuffix(r.URL.Path, ":streamGenerateContent") && r.URL.Query().Get("alt") == "sse":
			w.Header().Set("Content-Type", "text/event-stream")
			// A thought summary first: it is not the answer's text.
			fmt.Fprint(w, `data: {"candidates":[{"content":{"parts":[{"text":"Thinking about it","thought":true}],"role":"model"}}]}`+"\r\n\r\n")
			fl.Flush()
			for i := range parts {
				fmt.Fprint(w, "data: "+chunk(i)+"\r\n\r\n")
				fl.Flush()
			}
		case strings.HasSuffix(r.URL.Path, ":streamGenerateContent"):
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			for i := range parts {
				sep := ",\r\n"
				if i == 0 {
					sep = "["
				}
				fmt.Fprint(w, sep+chunk(i))
				fl.Flush()
			}
			fmt.Fprint(w, "]")
		case r.URL.Path == "/v1/chat/completions":
			// CJK text whose first read ends inside a character; the next
			// read is past the route's max_capture_bytes.
			w.Header().Set("Content-Type", "text/event-stream")
			first := "data: {\"choices\":[{\"delta\":{\"content\":\"你好\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"世界\"}}]}\n\n"
			cut := strings.LastIndex(first, "界") + 1
			fmt.Fprint(w, first[:cut])
			fl.Flush()
			time.Sleep(300 * time.Millisecond)
			fmt.Fprint(w, first[cut:]+strings.Repeat("data: {\"choices\":[{\"delta\":{\"content\":\"。\"}}]}\n\n", 20)+"data: [DONE]\n\n")
		case r.URL.Path == "/v1/responses":
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1",`+
				`"output":[{"type":"reasoning","summary":[]},{"type":"message","role":"assistant","content":[{"type":"output_text","annotations":[],"text":"Whole answer"}]}],`+
				`"usage":{"input_tokens":8,"output_tokens":3,"total_tokens":11}}`)
		case r.URL.Path == "/v1/messages":
			w.Header().Set("Content-Type", "text/event-stream")
			fmt.Fprint(w, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"\\u001b]0;pwned\\u0007\\u001b[2J\\u009b1mALL GOOD\\rover\"}}\n\n")
			fl.Flush()
			fmt.Fprint(w, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// relayProc is a relay process the tests run: the test binary as
// `relay -config cfg`.
type relayProc struct {
	cmd    *exec.Cmd
	errOut *servicetest.Buffer // its stderr, read while it runs
	done   chan error          // its exit
}

// startRelayProc starts the test binary as `relay -config cfg`; it is
// killed when the test ends if it still runs.
func startRelayProc(t *testing.T, cfg string) *relayProc {
	t.Helper()
	p := &relayProc{cmd: exec.Command(os.Args[0], "-config", cfg), errOut: &servicetest.Buffer{}, done: make(chan error, 1)}
	p.cmd.Env = append(os.Environ(), relayMainEnv+"=1", "QA_GEMINI_KEY=provider-key")
	p.cmd.Dir = t.TempDir()
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, p.errOut
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() { _ = p.cmd.Process.Kill() })
	return p
}

// startRelayProcess runs the test binary as `relay -config cfg` and
// returns stop, which sends SIGTERM and waits, so the rows are in
// the spool when it returns.
func startRelayProcess(t *testing.T, cfg string) (stop func()) {
	t.Helper()
	p := startRelayProc(t, cfg)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			t.Errorf("relay did not stop within 30 s; stderr:\n%s", p.errOut.String())
		}
	}
	t.Cleanup(stop)
	return stop
}

// showRelayConfig writes the configuration of a relay process with the
// relay key sk-relay-show-test, the given routes (YAML list items) and a
// spool of its own, and returns its address and file.
func showRelayConfig(t *testing.T, routes string) (addr, cfg string) {
	t.Helper()
	addr = servicetest.FreeAddr(t)
	host, port, _ := strings.Cut(addr, ":")
	cfg = filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf(`server: {host: %s, port: %s, shutdown_grace: 5s}
auth:
  keys:
    - {key: sk-relay-show-test, tenant: t1}
routes:
%sstorage:
  spool_dir: %s
`, host, port, routes, t.TempDir())
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return addr, cfg
}

// runShowRelay runs a relay process (startRelayProcess) of
// showRelayConfig and waits until it is ready. It returns its address, its
// config file (for relay show) and its stop.
func runShowRelay(t *testing.T, routes string) (addr, cfg string, stop func()) {
	t.Helper()
	addr, cfg = showRelayConfig(t, routes)
	stop = startRelayProcess(t, cfg)
	waitReady(t, "http://"+addr)
	return addr, cfg, stop
}

func waitReady(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("relay at %s not ready within 30 s", base)
}

// TestShowTextOfRealTraffic sends Gemini (with and without alt=sse, as the
// official SDKs do) and Anthropic requests through a running relay, stops
// it, and reads the rows back with relay show: the text view holds each
// answer's text, and the bytes a model or a client chose cannot drive the
// operator's terminal.
func TestShowTextOfRealTraffic(t *testing.T) {
	up := showUpstream(t)
	addr, cfg, stop := runShowRelay(t, fmt.Sprintf(`  - {name: gemini, path: /v1beta/models/*, upstream: %q, auth_env: QA_GEMINI_KEY, auth_header: x-goog-api-key, kind: sse}
  - {name: chat, path: /v1/chat/completions, upstream: %q, auth_env: QA_GEMINI_KEY, kind: sse, max_capture_bytes: 200}
  - {name: responses, path: /v1/responses, upstream: %q, auth_env: QA_GEMINI_KEY, kind: sse}
  - {name: anthropic, path: /v1/messages, upstream: %q, auth_env: QA_GEMINI_KEY, auth_header: x-api-key, kind: sse}
`, up.URL, up.URL, up.URL, up.URL))
	base := "http://" + addr

	send := func(path, key, body string) string {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key == "Authorization" {
			req.Header.Set(key, "Bearer sk-relay-show-test")
		} else {
			req.Header.Set(key, "sk-relay-show-test")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d", path, resp.StatusCode)
		}
		return resp.Header.Get("X-Request-Id")
	}
	gemini := `{"contents":[{"parts":[{"text":"Hello"}]}]}`
	sseID := send("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse", "X-Goog-Api-Key", gemini)
	arrayID := send("/v1beta/models/gemini-2.0-flash:streamGenerateContent", "X-Goog-Api-Key", gemini)
	respID := send("/v1/responses", "Authorization", `{"model":"gpt-4.1","input":"Hi"}`)
	cutID := send("/v1/chat/completions", "Authorization", `{"model":"gpt-4o","stream":true}`)
	escID := send("/v1/messages", "X-Api-Key", "{\"model\":\"claude-x\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"Hi \x1b[8mhidden\"}]}")
	stop()

	for _, tc := range []struct{ name, id string }{{"alt=sse", sseID}, {"JSON array", arrayID}} {
		out, err := show(t, tc.id, "-config", cfg)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		mustContain(t, out, "model              gemini-2.0-flash", "tokens             in 11, out 9", "text\n  Hello world\n")
		if strings.Contains(out, "text\n  Thinking") {
			t.Errorf("%s: a thought summary is in the text:\n%s", tc.name, out)
		}
	}

	out, err := show(t, respID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "tokens             in 8, out 3", "text\n  Whole answer\n")

	// A capture that stopped inside a character is still a stream of
	// events, not binary.
	out, err = show(t, cutID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "truncated          yes (max_capture_bytes)", "response events (2, from 1 chunks)", `{"content":"世\xe7`+"\n", "text\n  你好\n", "capture was truncated")
	if !utf8.ValidString(out) {
		t.Errorf("relay show printed bytes that are not UTF-8:\n%q", out)
	}

	out, err = show(t, escID, "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	if i := strings.IndexFunc(out, func(r rune) bool {
		return (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f)
	}); i >= 0 {
		t.Errorf("relay show printed a control character (%q at byte %d) to the terminal:\n%q", out[i:i+1], i, out)
	}
	mustContain(t, out, `\x1b]0;pwned\x07\x1b[2J\u009b1mALL GOOD\x0dover`, `"content":"Hi \x1b[8mhidden"`)
	// --json keeps the stored text as it is.
	out, err = show(t, escID, "-config", cfg, "--json")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, `"text": "\u001b]0;pwned\u0007\u001b[2J`+"\u009b"+`1mALL GOOD\rover"`)
}
