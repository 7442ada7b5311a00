package mockllm_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

type messageEvent struct {
	Type    string `json:"type"`
	Index   *int   `json:"index"`
	Message *struct {
		ID    string `json:"id"`
		Model string `json:"model"`
		Usage struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		} `json:"usage"`
	} `json:"message"`
	Delta *struct {
		Type       string `json:"type"`
		Text       string `json:"text"`
		StopReason string `json:"stop_reason"`
	} `json:"delta"`
	Usage *struct {
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

func TestMessagesStream(t *testing.T) {
	_, base, c := start(t, mockllm.Options{})
	tests := []struct {
		name   string
		body   string
		chunks string
		wantN  int
		model  string
	}{
		{name: "defaults", body: `{"stream":true}`, wantN: 20, model: "mock-model"},
		{name: "three", body: `{"model":"claude-x","stream":true,"max_tokens":5}`, chunks: "3", wantN: 3, model: "claude-x"},
		{name: "none", body: `{"stream":true}`, chunks: "0", wantN: 0, model: "mock-model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kv []string
			if tt.chunks != "" {
				kv = []string{mockllm.HeaderChunks, tt.chunks}
			}
			resp := post(t, c, base+"/v1/messages", tt.body, kv...)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status = %d, Content-Type = %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			evs, err := readAllEvents(resp.Body)
			if err != nil {
				t.Fatalf("reading events: %v", err)
			}
			var names []string
			names = append(names, "message_start", "content_block_start", "ping")
			for range tt.wantN {
				names = append(names, "content_block_delta")
			}
			names = append(names, "content_block_stop", "message_delta", "message_stop")
			if len(evs) != len(names) {
				t.Fatalf("got %d events, want %d", len(evs), len(names))
			}
			p := max(len(tt.body)/4, 1)
			for i, ev := range evs {
				if ev.name != names[i] {
					t.Fatalf("event %d = %q, want %q", i, ev.name, names[i])
				}
				var m messageEvent
				if err := json.Unmarshal([]byte(ev.data), &m); err != nil {
					t.Fatalf("event %d: %v: %s", i, err, ev.data)
				}
				if m.Type != ev.name {
					t.Errorf("event %d: data type %q under event %q", i, m.Type, ev.name)
				}
				switch ev.name {
				case "message_start":
					if m.Message == nil || m.Message.ID != "msg_mock" || m.Message.Model != tt.model ||
						m.Message.Usage.InputTokens != p || m.Message.Usage.OutputTokens != 1 {
						t.Errorf("message_start = %s", ev.data)
					}
				case "content_block_delta":
					want := "tok" + strconv.Itoa(i-3) + " "
					if m.Delta == nil || m.Delta.Type != "text_delta" || m.Delta.Text != want || m.Index == nil || *m.Index != 0 {
						t.Errorf("delta %d = %s, want text %q", i-3, ev.data, want)
					}
				case "message_delta":
					if m.Delta == nil || m.Delta.StopReason != "end_turn" || m.Usage == nil || m.Usage.OutputTokens != tt.wantN {
						t.Errorf("message_delta = %s", ev.data)
					}
				}
			}
		})
	}
}

func TestMessagesWhole(t *testing.T) {
	_, base, c := start(t, mockllm.Options{})
	body := `{"model":"claude-y","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	resp := post(t, c, base+"/v1/messages", body, mockllm.HeaderChunks, "2")
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, err = %v", resp.StatusCode, err)
	}
	var got struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Role    string `json:"role"`
		Model   string `json:"model"`
		Content []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
		StopReason string `json:"stop_reason"`
		Usage      struct {
			InputTokens  int `json:"input_tokens"`
			OutputTokens int `json:"output_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	if got.ID != "msg_mock" || got.Type != "message" || got.Role != "assistant" || got.Model != "claude-y" ||
		len(got.Content) != 1 || got.Content[0].Type != "text" || got.Content[0].Text != "tok0 tok1 " ||
		got.StopReason != "end_turn" || got.Usage.InputTokens != len(body)/4 || got.Usage.OutputTokens != 2 {
		t.Errorf("response = %s", raw)
	}
}
