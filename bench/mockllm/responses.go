package mockllm

import (
	"strconv"
	"time"
)

// responsesEndpoint serves POST /v1/responses, OpenAI's Responses API, in
// the shape of usage/testdata/responses.sse: response.created,
// response.in_progress, output_item.added and content_part.added, N
// response.output_text.delta events ("tok0 ", "tok1 ", ...), then
// output_text.done, content_part.done, output_item.done and
// response.completed with usage (input_tokens, output_tokens). Without
// "stream":true, the completed response object alone.
func responsesEndpoint(st *stream, req *apiRequest) {
	n := st.ctl.chunkCount(DefaultSSEChunks)
	created := time.Now().Unix()
	text := tokensText(n)
	if !req.Stream {
		st.whole(responseObject(req, "completed", text, n, created, true))
		return
	}
	const item = `"item_id":"msg_mock","output_index":0,"content_index":0`
	event := func(typ string, seq int, body string) []byte {
		b := []byte("event: " + typ + "\ndata: {\"type\":\"" + typ + "\",\"sequence_number\":")
		b = strconv.AppendInt(b, int64(seq), 10)
		b = append(b, body...)
		return append(b, "}\n\n"...)
	}
	head := [][]byte{
		event("response.created", 0, `,"response":`+string(responseObject(req, "in_progress", "", 0, created, false))),
		event("response.in_progress", 1, `,"response":`+string(responseObject(req, "in_progress", "", 0, created, false))),
		event("response.output_item.added", 2, `,"output_index":0,"item":{"id":"msg_mock","type":"message","status":"in_progress","content":[],"role":"assistant"}`),
		event("response.content_part.added", 3, `,`+item+`,"part":{"type":"output_text","annotations":[],"text":""}`),
	}
	part := `{"type":"output_text","annotations":[],"text":` + string(jsonString(text)) + `}`
	tail := [][]byte{
		event("response.output_text.done", 4+n, `,`+item+`,"text":`+string(jsonString(text))),
		event("response.content_part.done", 5+n, `,`+item+`,"part":`+part),
		event("response.output_item.done", 6+n, `,"output_index":0,"item":{"id":"msg_mock","type":"message","status":"completed","content":[`+part+`],"role":"assistant"}`),
		event("response.completed", 7+n, `,"response":`+string(responseObject(req, "completed", text, n, created, true))),
	}
	buf := make([]byte, 0, 256)
	st.run(&events{
		contentType: "text/event-stream",
		head:        head,
		n:           n,
		chunk: func(i int) []byte {
			buf = append(buf[:0], "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":"...)
			buf = strconv.AppendInt(buf, int64(4+i), 10)
			buf = append(buf, ","+item+`,"delta":"`...)
			buf = appendToken(buf, i)
			return append(buf, "\"}\n\n"...)
		},
		tail: tail,
	})
}

// responseObject is a Responses API response object; its output and usage
// only when done.
func responseObject(req *apiRequest, status, text string, n int, created int64, done bool) []byte {
	b := []byte(`{"id":"resp_mock","object":"response","created_at":`)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"status":"`+status+`","model":`...)
	b = append(b, jsonString(req.model())...)
	if !done {
		return append(b, `,"output":[],"usage":null}`...)
	}
	b = append(b, `,"output":[{"id":"msg_mock","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[],"text":`...)
	b = append(b, jsonString(text)...)
	b = append(b, `}]}],"usage":{"input_tokens":`...)
	b = strconv.AppendInt(b, int64(req.promptTokens), 10)
	b = append(b, `,"output_tokens":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(req.promptTokens+n), 10)
	return append(b, "}}"...)
}
