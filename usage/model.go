package usage

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Model returns the top-level "model" string of the JSON request body, or ""
// when absent or when the body is not a JSON object. Nested values (messages
// and their content) are skipped whole, so a "model" key inside them is never
// returned. String escapes are decoded ("gpt\u002d4o" is gpt-4o, as the
// upstream reads it; left as they were, one model had many names in the
// rows). The scan stops at the
// first "model": of a body that names it twice the first is returned (an
// upstream's decoder may take the last), so that a large body whose model
// comes first costs nothing past its head. One whose model comes last (the
// OpenAI SDKs send "messages" first) is walked whole: its strings are
// skipped quote to quote, a megabyte of base64 image in one step (a cut at
// 1 MiB left such requests without a model).
func Model(body []byte) string {
	o, ok := openObj(body)
	if !ok {
		return ""
	}
	for {
		k, v, more := o.next()
		if !more {
			return ""
		}
		if string(k) == "model" && len(v) >= 2 && v[0] == '"' {
			return jsonText(v)
		}
	}
}

// RequestModel returns the model a request names: the top-level "model" of
// its JSON body (Model), the "model" field of a multipart body (FormModel:
// an audio upload) or, when the body has neither, the one a Gemini path
// carries (/v1beta/models/NAME:streamGenerateContent). "" when none.
func RequestModel(path string, body []byte) string {
	if m := Model(body); m != "" {
		return m
	}
	if m := FormModel(body); m != "" {
		return m
	}
	return PathModel(path)
}

// PathModel returns NAME of a path ending in /models/NAME:method (Gemini,
// Vertex AI), or "". It does not allocate.
func PathModel(path string) string {
	i := strings.LastIndex(path, "/models/")
	if i < 0 {
		return ""
	}
	name := path[i+len("/models/"):]
	j := strings.IndexByte(name, ':')
	if j <= 0 || strings.IndexByte(name[:j], '/') >= 0 {
		return ""
	}
	return name[:j]
}

// IsRead reports whether method reads what is stored (GET, HEAD): its
// answer generates nothing, and errors it tells of (a batch's error file, a
// job's "error") are no error of the request's.
func IsRead(method string) bool { return method == "GET" || method == "HEAD" }

// EventStream reports whether captured response headers (the row's JSON
// object) say text/event-stream.
func EventStream(responseHeaders []byte) bool {
	return bytes.Contains(responseHeaders, []byte("text/event-stream"))
}

// BinaryAnswer reports whether captured response headers (the row's JSON
// object, lower-case names) give the answer a binary content type (audio,
// video, image, application/octet-stream): TTS audio through a route of
// kind sse, say. Such an answer is scanned as a raw route's is: its first
// byte is its first token (audio's TTFA), and it holds no events.
func BinaryAnswer(responseHeaders []byte) bool {
	const key = `"content-type":"`
	i := bytes.Index(responseHeaders, []byte(key))
	if i < 0 {
		return false
	}
	v := responseHeaders[i+len(key):]
	for _, p := range []string{"audio/", "video/", "image/", "application/octet-stream"} {
		if len(v) >= len(p) && bytes.EqualFold(v[:len(p)], []byte(p)) {
			return true
		}
	}
	return false
}

// StoredRead reports whether a request read stored objects (a read not
// answered with an event stream): nothing was generated, so its answer has
// no first token, and errors it tells of are not its own. A read that
// resumes a stream (GET /v1/responses/{id}?stream=true) is none.
func StoredRead(method string, responseHeaders []byte) bool {
	return IsRead(method) && !EventStream(responseHeaders)
}

// jsonText returns the JSON string v (quotes included) as text: its bytes
// when it holds no escape, else decoded; v itself when it does not decode.
func jsonText(v []byte) string {
	in := v[1 : len(v)-1]
	if bytes.IndexByte(in, '\\') < 0 {
		return string(in)
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return string(in)
	}
	return s
}
