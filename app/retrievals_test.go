package app

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestReadsChargeNoRepeatUsage: a read of a generation that ran before
// (a finished Responses response polled, a stored chat completion fetched)
// charges nothing and its row counts 0 tokens: three polls spent three
// times a response's tokens and the tenant was refused. A response that
// ran in the background, whose usage only a read carries, is charged at
// its first read, once.
func TestReadsChargeNoRepeatUsage(t *testing.T) {
	const (
		// OpenAI indents a non-streamed body: the id is found all the same.
		fg     = "{\n  \"id\": \"resp_fg1\",\n  " + `"object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}],"usage":{"input_tokens":36,"output_tokens":87,"total_tokens":123}}`
		bg     = `{"id":"resp_bg1","object":"response","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Yo"}]}],"usage":{"input_tokens":100,"output_tokens":100,"total_tokens":200}}`
		stored = `{"id":"chatcmpl-1","object":"chat.completion","choices":[{"message":{"content":"Hey"}}],"usage":{"prompt_tokens":150,"completion_tokens":150}}`
	)
	limits, _ := withLimits("", 100, 100)
	r := relayTo(t, "openai-reads", "/reads", "", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		p := strings.TrimPrefix(r.URL.Path, "/reads") // the route's prefix goes upstream
		switch {
		case p == "/v1/responses/resp_fg1" && r.URL.Query().Get("stream") == "true":
			// A resumed stream of a response charged at its POST, cut
			// before its usage: no estimate either.
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"" + strings.Repeat("x", 4000) + "\"}\n\n"))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case r.Method == "POST" && p == "/v1/responses", p == "/v1/responses/resp_fg1":
			_, _ = w.Write([]byte(fg))
		case p == "/v1/responses/resp_bg1":
			_, _ = w.Write([]byte(bg))
		case r.Method == "POST" && p == "/v1/responses/resp_bg2/cancel", p == "/v1/responses/resp_bg2":
			_, _ = w.Write([]byte(strings.ReplaceAll(bg, "resp_bg1", "resp_bg2")))
		case p == "/v1/chat/completions/chatcmpl-1":
			_, _ = w.Write([]byte(stored))
		default:
			http.NotFound(w, r)
		}
	}, func(c *Config) {
		limits(c)
		c.RateLimit.TokensPerMinute = 600 // 123 + 200 + 200 charged; polls charged again spent it
	})
	send := func(method, path string, status int) (int, row) {
		t.Helper()
		body := ""
		if method == "POST" {
			body = `{"model":"gpt-x","input":"Hi"}`
		}
		resp, got := r.request(t, method, path, body)
		if resp.StatusCode != status {
			t.Fatalf("%s %s: status %d %.200s", method, path, resp.StatusCode, got)
		}
		return resp.StatusCode, r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	}
	type want struct {
		method, path string
		in, out      int64
	}
	for i, w := range []want{
		{"POST", "/reads/v1/responses", 36, 87},
		{"GET", "/reads/v1/responses/resp_fg1", 0, 0}, // charged with its POST
		{"GET", "/reads/v1/responses/resp_fg1", 0, 0},
		{"GET", "/reads/v1/responses/resp_bg1", 100, 100}, // the first read of a background response
		{"GET", "/reads/v1/responses/resp_bg1", 0, 0},
		{"GET", "/reads/v1/responses/resp_bg1", 0, 0},
		{"GET", "/reads/v1/chat/completions/chatcmpl-1", 0, 0},
		{"GET", "/reads/v1/chat/completions/chatcmpl-1", 0, 0},
		{"POST", "/reads/v1/responses/resp_bg2/cancel", 100, 100}, // a cancel carrying usage is charged, and noted
		{"GET", "/reads/v1/responses/resp_bg2", 0, 0},
	} {
		_, rw := send(w.method, w.path, 200)
		if rw.TokensIn != w.in || rw.TokensOut != w.out {
			t.Errorf("request %d, %s %s: row tokens %d/%d, want %d/%d", i, w.method, w.path, rw.TokensIn, rw.TokensOut, w.in, w.out)
		}
	}
	// The resumed stream, cut with 4 KiB relayed and no usage, counts 0,
	// not an estimate: its response was charged at its POST.
	req, err := http.NewRequest("GET", r.base+"/reads/v1/responses/resp_fg1?stream=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+relayKey)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body) // cut: the read ends in an error
	resp.Body.Close()
	rw := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if resp.StatusCode != 200 || rw.ErrorType == "" || rw.TokensIn != 0 || rw.TokensOut != 0 {
		t.Errorf("cut resumed stream: status %d error %q row tokens %d/%d, want 0/0", resp.StatusCode, rw.ErrorType, rw.TokensIn, rw.TokensOut)
	}
}
