package mockllm

import (
	"encoding/json"
	"strconv"
	"time"
)

// OpenAI chat completion fragments shared by every request.
var (
	sseData          = []byte("data: ")
	sseEnd           = []byte("}\n\n")
	chatID           = "chatcmpl-mock"
	chatRoleChoice   = []byte(`"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]`)
	chatTokenChoice  = []byte(`"choices":[{"index":0,"delta":{"content":"`)
	chatTokenTail    = []byte(`"},"finish_reason":null}]}` + "\n\n")
	chatFinishChoice = []byte(`"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]`)
	chatDone         = []byte("data: [DONE]\n\n")
)

// chatEndpoint serves POST /v1/chat/completions.
func chatEndpoint(st *stream, req *apiRequest) {
	n := st.ctl.chunkCount(DefaultSSEChunks)
	created := time.Now().Unix()
	if !req.Stream {
		st.whole(chatCompletionJSON(req, n, created))
		return
	}

	// obj opens every chunk object up to its "choices".
	obj := []byte(`{"id":"` + chatID + `","object":"chat.completion.chunk","created":`)
	obj = strconv.AppendInt(obj, created, 10)
	obj = append(obj, `,"model":`...)
	obj = append(obj, jsonString(req.model())...)
	obj = append(obj, ',')

	tail := [][]byte{concat(sseData, obj, chatFinishChoice, sseEnd)}
	if req.StreamOptions.IncludeUsage {
		u := []byte(`"choices":[],"usage":`)
		u = appendChatUsage(u, req.promptTokens, n)
		tail = append(tail, concat(sseData, obj, u, sseEnd))
	}
	tail = append(tail, chatDone)

	st.run(&events{
		contentType: "text/event-stream",
		head:        [][]byte{concat(sseData, obj, chatRoleChoice, sseEnd)},
		n:           n,
		chunk:       chunkMaker(concat(sseData, obj, chatTokenChoice), chatTokenTail),
		tail:        tail,
	})
}

func appendChatUsage(dst []byte, prompt, completion int) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = strconv.AppendInt(dst, int64(prompt), 10)
	dst = append(dst, `,"completion_tokens":`...)
	dst = strconv.AppendInt(dst, int64(completion), 10)
	dst = append(dst, `,"total_tokens":`...)
	dst = strconv.AppendInt(dst, int64(prompt+completion), 10)
	return append(dst, '}')
}

// chatCompletion is the non-streaming /v1/chat/completions response.
type chatCompletion struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   chatUsage    `json:"usage"`
}

// chatChoice is one choice of a chatCompletion.
type chatChoice struct {
	Index        int         `json:"index"`
	Message      chatMessage `json:"message"`
	FinishReason string      `json:"finish_reason"`
}

// chatMessage is the assistant message of a chatChoice.
type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// chatUsage is the token usage of a chat completion, streamed or not.
type chatUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

func chatCompletionJSON(req *apiRequest, n int, created int64) []byte {
	b, err := json.Marshal(chatCompletion{
		ID:      chatID,
		Object:  "chat.completion",
		Created: created,
		Model:   req.model(),
		Choices: []chatChoice{{
			Message:      chatMessage{Role: "assistant", Content: tokensText(n)},
			FinishReason: "stop",
		}},
		Usage: chatUsage{PromptTokens: req.promptTokens, CompletionTokens: n, TotalTokens: req.promptTokens + n},
	})
	if err != nil {
		panic("BUG: mockllm: marshal chat completion: " + err.Error())
	}
	return b
}
