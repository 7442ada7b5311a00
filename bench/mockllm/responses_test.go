package mockllm_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/usage"
)

// TestResponsesStream: POST /v1/responses with "stream":true is a Responses
// API event stream: typed events with sequence numbers in order, N text
// deltas, usage in response.completed, as the relay's scanners read it.
func TestResponsesStream(t *testing.T) {
	_, base, c := start(t, mockllm.Options{})
	resp := post(t, c, base+"/v1/responses", `{"model":"gpt-test","input":"hi","stream":true}`, mockllm.HeaderChunks, "3")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	evs, err := readAllEvents(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var text, raw strings.Builder
	for i, ev := range evs {
		var e struct {
			Type  string `json:"type"`
			Seq   int    `json:"sequence_number"`
			Delta string `json:"delta"`
		}
		if err := json.Unmarshal([]byte(ev.data), &e); err != nil || e.Type != ev.name || e.Seq != i {
			t.Fatalf("event %d %q: %+v %v", i, ev.data, e, err)
		}
		names = append(names, e.Type)
		text.WriteString(e.Delta)
		raw.WriteString("event: " + ev.name + "\ndata: " + ev.data + "\n\n")
	}
	if len(evs) != 11 || names[0] != "response.created" || names[4] != "response.output_text.delta" || names[10] != "response.completed" {
		t.Fatalf("events %v", names)
	}
	if text.String() != "tok0 tok1 tok2 " {
		t.Fatalf("text %q", text.String())
	}
	if in, out, ok := usage.FindAPI(usage.Responses, []byte(raw.String())); !ok || out != 3 || in < 1 {
		t.Fatalf("usage %d %d %v", in, out, ok)
	}
}
