package app

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
	"go.uber.org/goleak"
)

func TestSSEStreamsThroughAndSwapsKeys(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/chat/completions?api-version=2&x=1",
		`{"model":"gpt-test","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
		map[string]string{"X-Tenant-ID": "other", mockllm.HeaderChunks: "5", "Connection": "keep-alive", "Cookie": "session=abc"})
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Errorf("content-type %q", ct)
	}
	id := resp.Header.Get("X-Request-Id")
	if len(id) != record.IDLen {
		t.Errorf("X-Request-Id %q", id)
	}
	ev := sseEvents(body)
	// role frame + 5 content + finish + [DONE]
	if len(ev) != 8 || ev[len(ev)-1] != "[DONE]" {
		t.Fatalf("events %d: %q", len(ev), ev)
	}
	reqs := r.mock.Requests()
	got := reqs[len(reqs)-1]
	if got.Path != "/v1/chat/completions?api-version=2&x=1" {
		t.Errorf("upstream path %q", got.Path)
	}
	if a := got.Header.Get("Authorization"); a != "Bearer "+providerKey {
		t.Errorf("upstream Authorization %q", a)
	}
	for _, h := range []string{"X-Tenant-Id", "Cookie", "X-Api-Key"} {
		if v := got.Header.Get(h); v != "" {
			t.Errorf("upstream got %s: %q", h, v)
		}
	}
	row := r.rows.wait(t, id)
	if row.Route != "openai" || row.Tenant != "other" || row.Status != 200 || row.ErrorType != "" || row.Model != "gpt-test" {
		t.Errorf("row %+v", row)
	}
	if row.TTFB < 0 || row.TTFT < row.TTFB || row.Duration < row.TTFT {
		t.Errorf("timings ttfb=%v ttft=%v duration=%v", row.TTFB, row.TTFT, row.Duration)
	}
	if strings.Join(row.Chunks, "") != body {
		t.Errorf("captured chunks differ from the body the client got")
	}
	if row.BytesOut != int64(len(body)) || len(row.ChunkTimes) != row.ChunkCount {
		t.Errorf("bytes_out %d (body %d), chunk times %d, chunks %d", row.BytesOut, len(body), len(row.ChunkTimes), row.ChunkCount)
	}
	if strings.Contains(row.ReqHeaders, relayKey) || !strings.Contains(row.ReqHeaders, `"authorization":"[redacted]"`) {
		t.Errorf("request headers not redacted: %s", row.ReqHeaders)
	}
	if strings.Contains(row.ReqHeaders, "session=abc") {
		t.Errorf("cookie stored: %s", row.ReqHeaders)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(row.RespHeaders), &m); err != nil || !strings.HasPrefix(m["content-type"], "text/event-stream") {
		t.Errorf("response headers %s (%v)", row.RespHeaders, err)
	}
}

// TestSSEArrivesChunkByChunk proves nothing is buffered: the mock sends the
// role frame and two content events, then stalls; the client must see all
// three while the upstream is still stalled.
func TestSSEArrivesChunkByChunk(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true}`,
		map[string]string{mockllm.HeaderStallAfter: "2", mockllm.HeaderChunks: "10"})
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	got := make(chan []string, 1)
	go func() {
		var evs []string
		for i := 0; i < 3; i++ {
			e, err := nextEvent(br)
			if err != nil {
				break
			}
			evs = append(evs, e)
		}
		got <- evs
	}()
	select {
	case evs := <-got:
		if len(evs) != 3 || !strings.Contains(evs[0], `"role":"assistant"`) || !strings.Contains(evs[2], "tok1") {
			t.Fatalf("events before the stall: %q", evs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("events sent before the upstream stalled did not reach the client")
	}
}

// TestTTFTAndUsage: TTFT falls between the first byte and the end (the
// scanner's own tests cover which frames count), and usage is extracted.
func TestTTFTAndUsage(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`,
		map[string]string{mockllm.HeaderChunks: "3", mockllm.HeaderDelayMs: "150"})
	readAll(t, resp)
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.TTFT < row.TTFB || row.TTFT >= row.Duration || row.Duration < 300*time.Millisecond {
		t.Errorf("ttft %v ttfb %v duration %v", row.TTFT, row.TTFB, row.Duration)
	}
	if row.TokensIn <= 0 || row.TokensOut != 3 {
		t.Errorf("openai usage in=%d out=%d", row.TokensIn, row.TokensOut)
	}
	resp = r.post(t, "/v1/messages", `{"model":"claude","stream":true}`,
		map[string]string{mockllm.HeaderChunks: "3", mockllm.HeaderDelayMs: "150", "anthropic-version": "2026-10-21"})
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(body, "message_stop") {
		t.Fatalf("anthropic: %d %s", resp.StatusCode, body)
	}
	row = r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.TTFT < row.TTFB || row.TTFT >= row.Duration {
		t.Errorf("anthropic ttft %v ttfb %v duration %v", row.TTFT, row.TTFB, row.Duration)
	}
	if row.TokensIn <= 0 || row.TokensOut != 3 {
		t.Errorf("anthropic usage in=%d out=%d", row.TokensIn, row.TokensOut)
	}
	reqs := r.mock.Requests()
	got := reqs[len(reqs)-1]
	if got.Header.Get("X-Api-Key") != providerKey || got.Header.Get("Authorization") != "" {
		t.Errorf("anthropic auth headers upstream: %v", got.Header)
	}
	// The route's headers entry is written `anthropic-version` (as in the
	// shipped configs): the client's field went upstream beside it.
	if v := got.Header.Values("Anthropic-Version"); len(v) != 1 || v[0] != "2026-10-21" {
		t.Errorf("anthropic-version upstream %q; want the client's alone", v)
	}
}

func TestAnthropicStyleKeyAndDefaultHeader(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/messages", `{"model":"claude","stream":true}`,
		map[string]string{"Authorization": "", "X-Api-Key": relayKey})
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("x-api-key relay key: %d %s", resp.StatusCode, body)
	}
	reqs := r.mock.Requests()
	if v := reqs[len(reqs)-1].Header.Get("Anthropic-Version"); v != "2023-06-01" {
		t.Errorf("default anthropic-version not added: %q", v)
	}
}

func TestRawAudioBytesIdentical(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/audio/speech", `{"model":"tts-1","input":"hello","voice":"alloy"}`,
		map[string]string{mockllm.HeaderChunks: "7", mockllm.HeaderChunkBytes: "5000"})
	body := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "audio/mpeg" {
		t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if want := mockllm.AudioBytes(7, 5000); !bytes.Equal([]byte(body), want) {
		t.Fatalf("audio differs: got %d bytes, want %d", len(body), len(want))
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.TTFT < 0 || row.BytesOut != 35000 || strings.Join(row.Chunks, "") != "" || len(row.ChunkTimes) == 0 {
		t.Errorf("raw row: ttfa %v bytes %d chunks %d times %d", row.TTFT, row.BytesOut, len(row.Chunks), len(row.ChunkTimes))
	}
	if row.ReqBody == "" {
		t.Errorf("request body not kept for model extraction")
	}
}

// Audio the route does not keep (capture: meta, the raw default) is
// spliced from the upstream's socket to the client's when it comes with a
// Content-Length or in chunks of 96 KiB or more, and copied in 64 KiB
// chunks: the client gets the same bytes either way, the row counts them
// with their arrival times, and relay_spliced_bytes_total shows which
// went without a copy. No other test of the package runs at the same
// time, so the counter moves only with this one's requests.
func TestRawAudioSpliced(t *testing.T) {
	r := startRelay(t, "")
	for _, tt := range []struct {
		name          string
		chunks, bytes int
		length        string // X-Mock-Length
		spliced       bool
	}{
		{"content length", 40, 64 << 10, "1", true},
		{"128 KiB chunks", 20, 128 << 10, "0", true},
		{"64 KiB chunks", 40, 64 << 10, "0", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := getMetrics(t, r.base+"/metrics")["relay_spliced_bytes_total"]
			resp := r.post(t, "/v1/audio/speech", `{"model":"tts-1","input":"hello","voice":"alloy"}`,
				map[string]string{mockllm.HeaderChunks: strconv.Itoa(tt.chunks), mockllm.HeaderChunkBytes: strconv.Itoa(tt.bytes), mockllm.HeaderLength: tt.length})
			body := readAll(t, resp)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "audio/mpeg" {
				t.Fatalf("status %d content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			want := mockllm.AudioBytes(tt.chunks, tt.bytes)
			if !bytes.Equal([]byte(body), want) {
				t.Fatalf("audio differs: got %d bytes, want %d", len(body), len(want))
			}
			row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
			if row.TTFT < 0 || row.BytesOut != int64(len(want)) || len(row.ChunkTimes) < 2 || row.ErrorType != "" {
				t.Errorf("row: ttfa %v bytes %d times %d error %q", row.TTFT, row.BytesOut, len(row.ChunkTimes), row.ErrorType)
			}
			spliced := getMetrics(t, r.base+"/metrics")["relay_spliced_bytes_total"] - before
			if tt.spliced && spliced < float64(len(want))/2 || !tt.spliced && spliced != 0 {
				t.Errorf("relay_spliced_bytes_total rose by %.0f for %d bytes of audio; want most of them: %v", spliced, len(want), tt.spliced)
			}
		})
	}
}

func TestNonStreamingJSONRelayedUnchanged(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/chat/completions", `{"model":"m"}`, map[string]string{mockllm.HeaderChunks: "4"})
	body := readAll(t, resp)
	var v struct {
		Object string `json:"object"`
		Usage  struct {
			CompletionTokens int `json:"completion_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil || v.Object != "chat.completion" || v.Usage.CompletionTokens != 4 {
		t.Fatalf("body %s (%v)", body, err)
	}
	// A whole body that came with the head goes out with its length, in
	// one write, not as a chunked stream.
	if resp.ContentLength != int64(len(body)) || len(resp.TransferEncoding) != 0 {
		t.Errorf("content-length %d, transfer-encoding %v for a %d-byte body", resp.ContentLength, resp.TransferEncoding, len(body))
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.TokensOut != 4 || row.TokensIn <= 0 || row.TTFT < 0 {
		t.Errorf("row tokens %d/%d ttft %v", row.TokensIn, row.TokensOut, row.TTFT)
	}
}

func TestUpstreamStatusAndBodyPassThrough(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true}`, map[string]string{mockllm.HeaderStatus: "429"})
	body := readAll(t, resp)
	if resp.StatusCode != 429 || !strings.Contains(body, "mock status 429") {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.Status != 429 || row.ErrorType != record.ErrUpstreamStatus || row.TTFT != record.None {
		t.Errorf("row %+v", row)
	}
}

func TestRejections(t *testing.T) {
	r := startRelay(t, "")
	tests := []struct {
		name, path, body string
		hdr              map[string]string
		status           int
		errType          string
	}{
		{"no key", "/v1/chat/completions", `{}`, map[string]string{"Authorization": ""}, 401, record.ErrUnauthorized},
		{"wrong key", "/v1/chat/completions", `{}`, map[string]string{"Authorization": "Bearer sk-nope"}, 401, record.ErrUnauthorized},
		{"tenant not allowed", "/v1/chat/completions", `{}`, map[string]string{"X-Tenant-ID": "second"}, 403, record.ErrForbidden},
		{"no route", "/v1/unknown", `{}`, nil, 404, record.ErrNotFound},
		// The tenant X-Tenant-ID chose, as a relayed request's row has it:
		// it went to the key's own.
		{"no route, another tenant of the key", "/v1/unknown", `{}`, map[string]string{"X-Tenant-ID": "other"}, 404, record.ErrNotFound},
		{"no route, a tenant not the key's", "/v1/unknown", `{}`, map[string]string{"X-Tenant-ID": "second"}, 404, record.ErrNotFound},
		{"body too large", "/v1/chat/completions", strings.Repeat("x", 70000), nil, 413, record.ErrBodyTooLarge},
		{"provider key unset", "/nokey/v1/x", `{}`, nil, 502, record.ErrUpstreamConfig},
		{"upstream refused", "/refused", `{}`, nil, 502, record.ErrUpstreamConnect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := r.tryPost(tt.path, tt.body, tt.hdr)
			// A body over the server's limit is answered (413) and the
			// connection closed before the body was read: a client still
			// writing may see a reset instead of the answer. Another try.
			for try := 1; err != nil && tt.status == 413 && strings.Contains(err.Error(), "reset") && try < 5; try++ {
				resp, err = r.tryPost(tt.path, tt.body, tt.hdr)
			}
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			var e struct {
				Error struct{ Type, Message string } `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Type != tt.errType || e.Error.Message == "" {
				t.Fatalf("error body %s (%v)", body, err)
			}
			for _, secret := range []string{relayKey, providerKey, "sk-nope"} {
				if strings.Contains(body, secret) {
					t.Errorf("error body leaks a key: %s", body)
				}
			}
			id := resp.Header.Get("X-Request-Id")
			if id == "" {
				t.Fatal("no X-Request-Id on an error")
			}
			row := r.rows.wait(t, id)
			if row.Status != tt.status || row.ErrorType != tt.errType {
				t.Errorf("row status %d type %q", row.Status, row.ErrorType)
			}
			wantTenant := "test-tenant"
			if tt.hdr["X-Tenant-ID"] == "other" {
				wantTenant = "other"
			}
			if tt.status == 404 && (row.Tenant != wantTenant || row.KeyID == "") {
				// Path probing with a valid key is told whose.
				t.Errorf("404 row of a request with a valid key: tenant %q key %q", row.Tenant, row.KeyID)
			}
			// Every row's headers are JSON objects, redacted, refused or not.
			var req, res map[string]string
			if err := json.Unmarshal([]byte(row.ReqHeaders), &req); err != nil || req["content-type"] != "application/json" {
				t.Errorf("request headers %q (%v)", row.ReqHeaders, err)
			}
			if a, ok := req["authorization"]; ok && a != "[redacted]" {
				t.Errorf("authorization stored: %q", a)
			}
			if err := json.Unmarshal([]byte(row.RespHeaders), &res); err != nil || !strings.HasPrefix(res["content-type"], "application/json") {
				t.Errorf("response headers %q (%v)", row.RespHeaders, err)
			}
		})
	}
}

// TestOversizedBodyKeepsItsRequest: a body over the server's limit is
// refused (413) before the relay's handlers run; chunked or framed by its
// length, the answer has its X-Request-Id and the row its route and, when
// the relay key is valid, its key and tenant.
func TestOversizedBodyKeepsItsRequest(t *testing.T) {
	r := startRelay(t, "")
	body := strings.Repeat("b", 70000) // testConfig: max_body_bytes 65536
	for _, tt := range []struct{ name, framing, body string }{
		{"content-length", "Content-Length: " + strconv.Itoa(len(body)) + "\r\n", body},
		{"chunked", "Transfer-Encoding: chunked\r\n", strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n\r\n"},
		{"chunked in pieces", "Transfer-Encoding: chunked\r\n", strings.Repeat("4000\r\n"+body[:0x4000]+"\r\n", 5) + "0\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			go func() {
				// The relay may answer and close before it read it all.
				_, _ = io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+"\r\n"+tt.framing+"\r\n"+tt.body)
			}()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			answer := readAll(t, resp)
			if resp.StatusCode != 413 || !strings.Contains(answer, record.ErrBodyTooLarge) {
				t.Fatalf("status %d: %s", resp.StatusCode, answer)
			}
			id := resp.Header.Get("X-Request-Id")
			if id == "" {
				t.Fatal("no X-Request-Id")
			}
			row := r.rows.wait(t, id)
			if row.Status != 413 || row.ErrorType != record.ErrBodyTooLarge || row.Route != "openai" || row.Tenant != "test-tenant" || row.KeyID == "" {
				t.Errorf("row %+v", row)
			}
		})
	}
}

func TestUpstreamFirstByteTimeout(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderFirstByteDelay: "4000"})
	body := readAll(t, resp)
	if resp.StatusCode != 504 || !strings.Contains(body, record.ErrUpstreamTimeout) {
		t.Fatalf("status %d body %s", resp.StatusCode, body)
	}
}

func TestUpstreamResetMidStream(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderResetAfter: "3"})
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("client saw a clean end after an upstream reset: %q", b)
	}
	if !strings.Contains(string(b), "tok2") {
		t.Errorf("chunks before the reset missing: %q", b)
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.ErrorType != record.ErrUpstreamReset {
		t.Errorf("error_type %q", row.ErrorType)
	}
}

func TestUpstreamIdleTimeoutEndsStream(t *testing.T) {
	r := startRelay(t, "")
	start := time.Now()
	resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderStallAfter: "1"})
	defer resp.Body.Close()
	_, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Error("stream ended cleanly after an idle timeout")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("idle timeout of 2s took %v", d)
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.ErrorType != record.ErrUpstreamTimeout {
		t.Errorf("error_type %q", row.ErrorType)
	}
	waitFor(t, 3*time.Second, func() bool { return r.mock.Closed() >= 1 }, "upstream connection not closed after the idle timeout")
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawStream opens a raw TCP connection, sends a streaming request and
// reads until the response has at least n data events.
func rawStream(t *testing.T, base string, hdr string, n int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"model":"m","stream":true}`
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
		"\r\nContent-Type: application/json\r\n" + hdr + "Content-Length: " + itoa(len(body)) + "\r\n\r\n" + body
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var got []byte
	buf := make([]byte, 4096)
	for strings.Count(string(got), "data: ") < n {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading stream: %v (got %q)", err, got)
		}
		got = append(got, buf[:k]...)
	}
	return c
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestClientDisconnectClosesUpstream(t *testing.T) {
	ignore := goleak.IgnoreCurrent()
	r := startRelay(t, "")
	t.Run("while chunks flow", func(t *testing.T) {
		before := r.mock.Closed()
		c := rawStream(t, r.base, "X-Mock-Chunks: 100000\r\nX-Mock-Delay-Ms: 5\r\n", 3)
		closedAt := time.Now()
		_ = c.Close()
		waitFor(t, 2*time.Second, func() bool { return r.mock.Closed() > before }, "upstream still open after the client left")
		t.Logf("upstream closed %v after the client (flowing)", time.Since(closedAt))
	})
	t.Run("while upstream silent", func(t *testing.T) {
		before := r.mock.Closed()
		c := rawStream(t, r.base, "X-Mock-Stall-After: 1\r\n", 2)
		time.Sleep(100 * time.Millisecond)
		closedAt := time.Now()
		_ = c.Close()
		waitFor(t, 3*time.Second, func() bool { return r.mock.Closed() > before }, "upstream still open after the client left a silent stream")
		t.Logf("upstream closed %v after the client (silent)", time.Since(closedAt))
	})
	t.Run("while the upstream has not answered", func(t *testing.T) {
		before := r.mock.Closed()
		c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		body := `{"model":"m"}`
		req := "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
			"\r\nX-Mock-First-Byte-Delay-Ms: 1900\r\nContent-Length: " + itoa(len(body)) + "\r\n\r\n" + body
		if _, err := c.Write([]byte(req)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		closedAt := time.Now()
		_ = c.Close()
		waitFor(t, 1500*time.Millisecond, func() bool { return r.mock.Closed() > before }, "upstream still working after the client left before the first byte")
		t.Logf("upstream closed %v after the client (before the first byte)", time.Since(closedAt))
	})
	waitFor(t, 3*time.Second, func() bool { return r.app.relay.Active() == 0 }, "requests still active")
	r.rows.mu.Lock()
	var closed int
	for _, row := range r.rows.rows {
		if row.ErrorType == record.ErrClientClosed {
			closed++
		}
	}
	r.rows.mu.Unlock()
	if closed != 3 {
		t.Errorf("%d rows with client_closed, want 3", closed)
	}
	// Nothing the streams started outlives the relay. fasthttp's own
	// housekeeping (per-host idle-connection cleaner, worker-pool cleaner,
	// the process-wide Date updater) sleeps out its period; none is per
	// stream.
	r.stop(t)
	_ = r.mock.Close()
	testClient.CloseIdleConnections()
	goleak.VerifyNone(t, ignore,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
}

func TestGracefulShutdownFinishesStreams(t *testing.T) {
	r := startRelay(t, "")
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderChunks: "10", mockllm.HeaderDelayMs: "100"})
	go func() {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	time.Sleep(200 * time.Millisecond)
	stopped := make(chan struct{})
	go func() { r.stop(t); close(stopped) }()
	time.Sleep(100 * time.Millisecond)
	// New connections are refused while the stream drains.
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(r.base, "http://"), time.Second); err == nil {
		c.Close()
		t.Error("relay still accepts connections while shutting down")
	}
	got := <-res
	if got.err != nil || !strings.Contains(got.body, "[DONE]") {
		t.Fatalf("in-flight stream cut by shutdown: %v %q", got.err, got.body)
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown did not finish")
	}
}

func TestHealthAndReady(t *testing.T) {
	r := startRelay(t, "")
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(r.base + p)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("%s: %d, content type %q", p, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	r.app.relay.Drain()
	resp, err := http.Get(r.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 503 {
		t.Errorf("readyz while draining: %d", resp.StatusCode)
	}
}

// startRelayReadTimeout starts the test relay with server.read_timeout d.
func startRelayReadTimeout(t *testing.T, d string) *relay {
	t.Helper()
	return startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "  shutdown_grace: 5s\n", "  shutdown_grace: 5s\n  read_timeout: "+d+"\n", 1)
	}, nil)
}

// TestStreamOutlivesReadTimeout: server.read_timeout bounds reading the
// request, not the stream. Its deadline stays armed on the client's socket
// while the answer streams; the watchdog's check of a silent stream's
// client must not take the expired deadline for a gone client (it did:
// every stream past read_timeout whose upstream paused for 250 ms was cut
// as client_closed).
func TestStreamOutlivesReadTimeout(t *testing.T) {
	r := startRelayReadTimeout(t, "1s")
	// 6 chunks 600 ms apart: 3 s, each pause long enough for the watchdog
	// to look at the client (after 250 ms of silence).
	start := time.Now()
	resp := r.post(t, "/v1/chat/completions", `{"stream":true}`,
		map[string]string{mockllm.HeaderChunks: "6", mockllm.HeaderDelayMs: "600"})
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if n := strings.Count(body, "tok"); n != 6 || !strings.Contains(body, "[DONE]") {
		t.Fatalf("%d of 6 chunks and no [DONE] after %v: %q", n, time.Since(start), body)
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.ErrorType != "" || row.ChunkCount < 6 {
		t.Errorf("row error_type %q, %d chunks", row.ErrorType, row.ChunkCount)
	}
}

// TestSlowAnswerOutlivesReadTimeout: the same for an upstream slower to its
// first byte than read_timeout (a long non-streamed completion): the
// watchdog checks the waiting client, and an expired read deadline is no
// gone client.
func TestSlowAnswerOutlivesReadTimeout(t *testing.T) {
	r := startRelayReadTimeout(t, "1s")
	// The anthropic route keeps the default first_byte_timeout (120 s).
	resp := r.post(t, "/v1/messages", `{"stream":false}`, map[string]string{mockllm.HeaderFirstByteDelay: "2500"})
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d after a 2.5 s first byte with read_timeout 1s: %s", resp.StatusCode, body)
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.ErrorType != "" {
		t.Errorf("row error_type %q", row.ErrorType)
	}
}

// TestUpstreamRequestIDRenamed: an upstream that answers with its own
// X-Request-Id (as OpenAI does) leaves the client one X-Request-Id, the
// relay's row id; the upstream's comes as X-Upstream-Request-Id and stays
// in the row's response headers under its own name.
func TestUpstreamRequestIDRenamed(t *testing.T) {
	r := startRelay(t, "")
	resp := r.post(t, "/v1/chat/completions", `{"model":"gpt-test","stream":true}`,
		map[string]string{mockllm.HeaderChunks: "2", mockllm.HeaderRequestID: "req_upstream_42"})
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	ids := resp.Header.Values("X-Request-Id")
	if len(ids) != 1 || len(ids[0]) != record.IDLen {
		t.Fatalf("X-Request-Id fields %q, want the relay's alone", ids)
	}
	if got := resp.Header.Values(upstream.UpstreamRequestID); len(got) != 1 || got[0] != "req_upstream_42" {
		t.Errorf("%s fields %q", upstream.UpstreamRequestID, got)
	}
	row := r.rows.wait(t, ids[0])
	var m map[string]string
	if err := json.Unmarshal([]byte(row.RespHeaders), &m); err != nil || m["x-request-id"] != "req_upstream_42" {
		t.Errorf("row response headers %s (%v)", row.RespHeaders, err)
	}
}

// TestUpstreamRateLimitHeadersRenamed: a provider's X-RateLimit-* fields
// reach the client under X-Upstream-RateLimit-* when the relay's own limits
// set those names, so that a client reads one value of each; without the
// relay's limits they pass as they came.
func TestUpstreamRateLimitHeadersRenamed(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-RateLimit-Limit", "999")
		w.Header().Set("X-RateLimit-Remaining", "998")
		w.Header().Set("X-RateLimit-Reset", "7")
		_, _ = io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n")
	}))
	defer up.Close()
	for _, limits := range []bool{true, false} {
		r := startRelayYAML(t, func(y string) string {
			y = strings.Replace(y, "upstream: "+firstUpstream(y)+"\n", "upstream: "+up.URL+"\n", 1) // the openai route
			if limits {
				y = strings.Replace(y, "rate_limit:\n  disabled: true", "rate_limit:\n  default: 600", 1)
			}
			return y
		}, nil)
		resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, nil)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		own, theirs := resp.Header.Values("X-RateLimit-Limit"), resp.Header.Values("X-Upstream-RateLimit-Limit")
		switch {
		case limits && (len(own) != 1 || own[0] == "999" || len(theirs) != 1 || theirs[0] != "999" ||
			resp.Header.Get("X-Upstream-RateLimit-Remaining") != "998" || resp.Header.Get("X-Upstream-RateLimit-Reset") != "7"):
			t.Errorf("with the relay's limits: X-RateLimit-Limit %q, X-Upstream-RateLimit-Limit %q", own, theirs)
		case !limits && (len(own) != 1 || own[0] != "999" || len(theirs) != 0):
			t.Errorf("without the relay's limits: X-RateLimit-Limit %q, X-Upstream-RateLimit-Limit %q", own, theirs)
		}
	}
}

// firstUpstream returns the upstream of the first route of a testConfig
// YAML: the mock's base URL.
func firstUpstream(y string) string {
	_, rest, _ := strings.Cut(y, "upstream: ")
	base, _, _ := strings.Cut(rest, "\n")
	return base
}

// TestMalformedChunkedBodyKeepsItsRequest: a chunked body that breaks
// its framing (a chunk's end, an extension) after a whole header block is
// answered 400 with its
// X-Request-Id, and its row names the route and the key (fasthttp had reset
// the request before its error handler ran: no id, no row).
func TestMalformedChunkedBodyKeepsItsRequest(t *testing.T) {
	r := startRelay(t, "")
	// Chunks that break their framing: no CRLF after a chunk's data, an LF
	// in a chunk extension, a size that is no hex number.
	for _, body := range []string{"3\r\nabcX\r\n0\r\n\r\n", "3;a\nb\r\nabc\r\n0\r\n\r\n", "zz\r\nabc\r\n0\r\n\r\n"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		_, _ = io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+relayKey+"\r\nTransfer-Encoding: chunked\r\n\r\n"+body)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		answer := readAll(t, resp)
		c.Close()
		id := resp.Header.Get("X-Request-Id")
		if resp.StatusCode != 400 || id == "" {
			t.Fatalf("body %q: status %d, X-Request-Id %q: %s", body, resp.StatusCode, id, answer)
		}
		row := r.rows.wait(t, id)
		if row.Status != 400 || row.ErrorType != record.ErrBadRequest || row.Route != "openai" || row.KeyID == "" {
			t.Errorf("body %q: row %+v", body, row)
		}
	}
}
