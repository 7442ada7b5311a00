package mockllm

import (
	"encoding/json"
	"strconv"
)

// Anthropic messages fragments shared by every request.
var (
	msgID         = "msg_mock"
	msgBlockStart = []byte("event: content_block_start\n" +
		`data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}` + "\n\n")
	msgPing       = []byte("event: ping\n" + `data: {"type":"ping"}` + "\n\n")
	msgDeltaHead  = []byte("event: content_block_delta\n" + `data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"`)
	msgDeltaTail  = []byte(`"}}` + "\n\n")
	msgBlockStop  = []byte("event: content_block_stop\n" + `data: {"type":"content_block_stop","index":0}` + "\n\n")
	msgStop       = []byte("event: message_stop\n" + `data: {"type":"message_stop"}` + "\n\n")
	msgStartHead  = []byte("event: message_start\n" + `data: {"type":"message_start","message":{"id":"` + msgID + `","type":"message","role":"assistant","model":`)
	msgStartUsage = []byte(`,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":`)
	msgStartTail  = []byte(`,"output_tokens":1}}}` + "\n\n")
	msgDeltaStart = []byte("event: message_delta\n" +
		`data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":`)
)

// messagesEndpoint serves POST /v1/messages.
func messagesEndpoint(st *stream, req *apiRequest) {
	n := st.ctl.chunkCount(DefaultSSEChunks)
	if !req.Stream {
		st.whole(messageJSON(req, n))
		return
	}

	start := append([]byte(nil), msgStartHead...)
	start = append(start, jsonString(req.model())...)
	start = append(start, msgStartUsage...)
	start = strconv.AppendInt(start, int64(req.promptTokens), 10)
	start = append(start, msgStartTail...)

	delta := append([]byte(nil), msgDeltaStart...)
	delta = strconv.AppendInt(delta, int64(n), 10)
	delta = append(delta, "}}\n\n"...)

	st.run(&events{
		contentType: "text/event-stream",
		head:        [][]byte{start, msgBlockStart, msgPing},
		n:           n,
		chunk:       chunkMaker(msgDeltaHead, msgDeltaTail),
		tail:        [][]byte{msgBlockStop, delta, msgStop},
	})
}

// message is the non-streaming /v1/messages response.
type message struct {
	ID           string         `json:"id"`
	Type         string         `json:"type"`
	Role         string         `json:"role"`
	Model        string         `json:"model"`
	Content      []messageBlock `json:"content"`
	StopReason   string         `json:"stop_reason"`
	StopSequence *string        `json:"stop_sequence"`
	Usage        messageUsage   `json:"usage"`
}

type messageBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type messageUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

func messageJSON(req *apiRequest, n int) []byte {
	b, err := json.Marshal(message{
		ID:         msgID,
		Type:       "message",
		Role:       "assistant",
		Model:      req.model(),
		Content:    []messageBlock{{Type: "text", Text: tokensText(n)}},
		StopReason: "end_turn",
		Usage:      messageUsage{InputTokens: req.promptTokens, OutputTokens: n},
	})
	if err != nil {
		panic("BUG: mockllm: marshal message: " + err.Error())
	}
	return b
}
