package mockllm_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

type chatChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func TestChatStream(t *testing.T) {
	_, base, c := start(t, mockllm.Options{})
	tests := []struct {
		name      string
		body      string
		chunks    string // X-Mock-Chunks, "" for the default
		wantN     int
		wantModel string
		wantUsage bool
	}{
		{name: "defaults", body: `{"stream":true}`, wantN: 20, wantModel: "mock-model"},
		{name: "usage", body: `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true}}`, chunks: "3", wantN: 3, wantModel: "gpt-4o", wantUsage: true},
		{name: "usage off", body: `{"stream":true,"stream_options":{"include_usage":false}}`, chunks: "2", wantN: 2, wantModel: "mock-model"},
		{name: "no chunks", body: `{"stream":true,"model":"q\"m"}`, chunks: "0", wantN: 0, wantModel: `q"m`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var kv []string
			if tt.chunks != "" {
				kv = []string{mockllm.HeaderChunks, tt.chunks}
			}
			resp := post(t, c, base+"/v1/chat/completions", tt.body, kv...)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != "text/event-stream" {
				t.Errorf("Content-Type = %q", got)
			}
			if resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Errorf("ContentLength = %d, TransferEncoding = %v; want a chunked stream", resp.ContentLength, resp.TransferEncoding)
			}
			evs, err := readAllEvents(resp.Body)
			if err != nil {
				t.Fatalf("reading events: %v", err)
			}
			want := 1 + tt.wantN + 1 + 1 // role, content, finish, [DONE]
			if tt.wantUsage {
				want++
			}
			if len(evs) != want {
				t.Fatalf("got %d events, want %d", len(evs), want)
			}
			if last := evs[len(evs)-1]; last.data != "[DONE]" {
				t.Fatalf("last event = %q, want [DONE]", last.data)
			}
			chunks := make([]chatChunk, len(evs)-1)
			for i := range chunks {
				if evs[i].name != "" {
					t.Errorf("event %d has name %q", i, evs[i].name)
				}
				if err := json.Unmarshal([]byte(evs[i].data), &chunks[i]); err != nil {
					t.Fatalf("event %d: %v: %s", i, err, evs[i].data)
				}
				ch := &chunks[i]
				if ch.ID != "chatcmpl-mock" || ch.Object != "chat.completion.chunk" || ch.Model != tt.wantModel || ch.Created == 0 {
					t.Errorf("event %d header fields: %+v", i, ch)
				}
			}

			role := chunks[0]
			if len(role.Choices) != 1 || role.Choices[0].Delta.Role == nil || *role.Choices[0].Delta.Role != "assistant" ||
				role.Choices[0].FinishReason != nil {
				t.Errorf("role frame = %s", evs[0].data)
			}
			for i := 0; i < tt.wantN; i++ {
				ch := chunks[1+i]
				wantText := "tok" + strconv.Itoa(i) + " "
				if len(ch.Choices) != 1 || ch.Choices[0].Delta.Content == nil || *ch.Choices[0].Delta.Content != wantText {
					t.Errorf("content %d = %s, want text %q", i, evs[1+i].data, wantText)
				}
			}
			fin := chunks[1+tt.wantN]
			if len(fin.Choices) != 1 || fin.Choices[0].FinishReason == nil || *fin.Choices[0].FinishReason != "stop" ||
				fin.Choices[0].Delta.Content != nil {
				t.Errorf("finish frame = %s", evs[1+tt.wantN].data)
			}
			if tt.wantUsage {
				u := chunks[2+tt.wantN]
				p := max(len(tt.body)/4, 1)
				if len(u.Choices) != 0 || u.Usage == nil || u.Usage.PromptTokens != p ||
					u.Usage.CompletionTokens != tt.wantN || u.Usage.TotalTokens != p+tt.wantN {
					t.Errorf("usage chunk = %s, want prompt %d completion %d", evs[2+tt.wantN].data, p, tt.wantN)
				}
			}
			for i, ch := range chunks[:1+tt.wantN+1] {
				if ch.Usage != nil {
					t.Errorf("event %d carries usage", i)
				}
			}
		})
	}
}

func TestChatWhole(t *testing.T) {
	_, base, c := start(t, mockllm.Options{})
	body := `{"model":"m1","messages":[{"role":"user","content":"hello there"}]}`
	resp := post(t, c, base+"/v1/chat/completions", body, mockllm.HeaderChunks, "3")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status = %d, Content-Type = %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp.ContentLength <= 0 {
		t.Errorf("ContentLength = %d, want set", resp.ContentLength)
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	p := len(body) / 4
	if got.Object != "chat.completion" || got.Model != "m1" || len(got.Choices) != 1 ||
		got.Choices[0].Message.Role != "assistant" || got.Choices[0].Message.Content != "tok0 tok1 tok2 " ||
		got.Choices[0].FinishReason != "stop" ||
		got.Usage.PromptTokens != p || got.Usage.CompletionTokens != 3 || got.Usage.TotalTokens != p+3 {
		t.Errorf("response = %s", raw)
	}
}
