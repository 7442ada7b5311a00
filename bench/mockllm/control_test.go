package mockllm_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

type errorReply struct {
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

// readError decodes a JSON error reply and checks its status.
func readError(t *testing.T, resp *http.Response, wantStatus int) errorReply {
	t.Helper()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("status = %d, want %d: %s", resp.StatusCode, wantStatus, raw)
	}
	var e errorReply
	if err := json.Unmarshal(raw, &e); err != nil || e.Error.Type == "" {
		t.Fatalf("error body %q: %v", raw, err)
	}
	return e
}

func TestBadControlHeader(t *testing.T) {
	_, base, c := start(t, mockllm.Options{})
	tests := []struct {
		header, value string
	}{
		{mockllm.HeaderChunks, "abc"},
		{mockllm.HeaderChunks, "-1"},
		{mockllm.HeaderChunks, "1000001"},
		{mockllm.HeaderDelayMs, "fast"},
		{mockllm.HeaderDelayMs, "-0.5"},
		{mockllm.HeaderDelayMs, "NaN"},
		{mockllm.HeaderFirstByteDelay, "1e9"},
		{mockllm.HeaderStatus, "99"},
		{mockllm.HeaderStatus, "600"},
		{mockllm.HeaderStallAfter, "x"},
		{mockllm.HeaderResetAfter, "1.5"},
		{mockllm.HeaderChunkBytes, "0"},
		{mockllm.HeaderChunkBytes, "2000000"},
		{mockllm.HeaderLength, "2"},
	}
	for _, tt := range tests {
		t.Run(tt.header+"="+tt.value, func(t *testing.T) {
			resp := post(t, c, base+"/v1/chat/completions", `{"stream":true}`, tt.header, tt.value)
			e := readError(t, resp, http.StatusBadRequest)
			if !strings.Contains(e.Error.Message, tt.header) {
				t.Errorf("message %q does not name %s", e.Error.Message, tt.header)
			}
		})
	}
	t.Run("stall and reset", func(t *testing.T) {
		resp := post(t, c, base+"/v1/messages", `{}`, mockllm.HeaderStallAfter, "1", mockllm.HeaderResetAfter, "2")
		e := readError(t, resp, http.StatusBadRequest)
		if !strings.Contains(e.Error.Message, mockllm.HeaderStallAfter) {
			t.Errorf("message %q does not name %s", e.Error.Message, mockllm.HeaderStallAfter)
		}
	})
	t.Run("bad JSON", func(t *testing.T) {
		readError(t, post(t, c, base+"/v1/chat/completions", `{"stream":`), http.StatusBadRequest)
	})
}

func TestMockStatus(t *testing.T) {
	_, base, c := start(t, mockllm.Options{})
	tests := []struct {
		path   string
		status int
	}{
		{"/v1/chat/completions", 429},
		{"/v1/messages", 529},
		{"/v1/audio/speech", 500},
		{"/v1/chat/completions", 200},
	}
	for _, tt := range tests {
		t.Run(tt.path+"/"+strconv.Itoa(tt.status), func(t *testing.T) {
			resp := post(t, c, base+tt.path, `{"stream":true}`, mockllm.HeaderStatus, strconv.Itoa(tt.status))
			e := readError(t, resp, tt.status)
			if e.Error.Type != "mock_error" || e.Error.Message != "mock status "+strconv.Itoa(tt.status) {
				t.Errorf("error = %+v", e.Error)
			}
		})
	}
}

func TestRequireKey(t *testing.T) {
	_, base, c := start(t, mockllm.Options{RequireKey: "sk-good"})
	tests := []struct {
		name string
		kv   []string
		want int
	}{
		{name: "none", want: http.StatusUnauthorized},
		{name: "wrong bearer", kv: []string{"Authorization", "Bearer sk-bad"}, want: http.StatusUnauthorized},
		{name: "not bearer", kv: []string{"Authorization", "sk-good"}, want: http.StatusUnauthorized},
		{name: "wrong x-api-key", kv: []string{"x-api-key", "sk-goo"}, want: http.StatusUnauthorized},
		{name: "bearer", kv: []string{"Authorization", "Bearer sk-good"}, want: http.StatusOK},
		{name: "x-api-key", kv: []string{"x-api-key", "sk-good"}, want: http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := post(t, c, base+"/v1/messages", `{}`, tt.kv...)
			if tt.want != http.StatusOK {
				if e := readError(t, resp, tt.want); e.Error.Type != "authentication_error" {
					t.Errorf("error type = %q", e.Error.Type)
				}
				return
			}
			if resp.StatusCode != tt.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
	t.Run("healthz open", func(t *testing.T) {
		resp, err := c.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "ok" {
			t.Errorf("healthz = %d %q", resp.StatusCode, body)
		}
	})
}

func TestFirstByteDelay(t *testing.T) {
	_, base, c := start(t, mockllm.Options{})
	t0 := time.Now()
	resp := post(t, c, base+"/v1/chat/completions", `{}`, mockllm.HeaderFirstByteDelay, "150.5")
	if got := time.Since(t0); got < 100*time.Millisecond {
		t.Errorf("headers after %v, want >= 150ms", got)
	}
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status = %d", resp.StatusCode)
	}
}
