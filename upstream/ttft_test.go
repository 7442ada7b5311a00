package upstream

import (
	"strings"
	"testing"
)

func TestTokenScanner(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   int // index of the chunk that completes the first token; -1 none
	}{
		{"openai role frame then content", []string{
			`data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n",
			`data: {"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}` + "\n\n",
		}, 1},
		{"openai null content", []string{`data: {"delta":{"content":null}}` + "\n\n"}, -1},
		{"reasoning counts", []string{`data: {"delta":{"role":"assistant","content":""}}`, `data: {"delta":{"reasoning_content":"Let"}}`}, 1},
		{"tool call arguments", []string{`data: {"delta":{"tool_calls":[{"function":{"arguments":"{\"a"}}]}}`}, 0},
		{"spaces around colon", []string{`data: {"delta": {"content" :  "x"}}`}, 0},
		{"escaped first char", []string{`data: {"delta":{"content":"\n"}}`}, 0},
		{"anthropic", []string{
			"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"content\":[],\"usage\":{\"input_tokens\":5}}}\n\n",
			"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
			"event: ping\ndata: {\"type\":\"ping\"}\n\n",
			"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
		}, 3},
		{"anthropic thinking", []string{`data: {"delta":{"type":"thinking_delta","thinking":"hmm"}}`}, 0},
		{"key split across reads", []string{`data: {"delta":{"con`, `tent":"x"}}`}, 1},
		{"value split across reads", []string{`data: {"delta":{"content":"`, `x"}}`}, 1},
		{"tiny reads", strings.Split(`data: {"delta":{"content":"yo"}}`, ""), len(`data: {"delta":{"content":"y`) - 1},
		{"empty then end", []string{`data: {"delta":{"content":""}}`, "data: [DONE]\n\n"}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s tokenScanner
			got := -1
			for i, c := range tt.chunks {
				if s.scan([]byte(c)) {
					got = i
					break
				}
			}
			if got != tt.want {
				t.Errorf("token found at chunk %d, want %d", got, tt.want)
			}
		})
	}
}

func FuzzTokenScanner(f *testing.F) {
	f.Add([]byte(`data: {"delta":{"content":"x"}}`), 3)
	f.Add([]byte(`{"text":""}`), 1)
	f.Fuzz(func(t *testing.T, b []byte, step int) {
		if step <= 0 {
			step = 1
		}
		var s tokenScanner
		whole := hasContent(b)
		split := false
		for i := 0; i < len(b); i += step {
			if s.scan(b[i:min(i+step, len(b))]) {
				split = true
				break
			}
		}
		// Split scanning may miss nothing that a whole scan finds when keys
		// and values are short; it must never find what is not there.
		if split && !whole {
			t.Fatalf("split scan found content a whole scan did not: %q", b)
		}
	})
}
