package usage

import "strings"

// API is the wire format of a provider's response: it decides which keys
// carry generated content (the first-token clock) and where the token
// counts are (Find). The relay picks it from the request path (APIForPath),
// on the live path and in `relay reparse` alike.
type API uint8

// The APIs with their own rules. Generic, for a path that names none of
// them, applies the union of all rules.
const (
	Generic    API = iota // unknown path: every rule below at once
	OpenAIChat            // OpenAI chat completions and compatible servers (vLLM, Ollama /v1, ...)
	Responses             // OpenAI Responses API
	Anthropic             // Anthropic messages
	Gemini                // Google Gemini generateContent / streamGenerateContent
	Ollama                // Ollama's native API: /api/chat, /api/generate (NDJSON)
)

var apiNames = [...]string{
	Generic:    "generic",
	OpenAIChat: "openai-chat",
	Responses:  "openai-responses",
	Anthropic:  "anthropic",
	Gemini:     "gemini",
	Ollama:     "ollama",
}

// String returns the API's short name, as in the README's table.
func (a API) String() string {
	if int(a) < len(apiNames) {
		return apiNames[a]
	}
	return "unknown"
}

// APIForPath returns the API that a request path (without the query string)
// speaks, by its last segment, which is the same whatever prefix a route
// adds:
//
//	.../chat/completions, .../completions        OpenAIChat
//	.../responses, .../responses/{id}            Responses
//	.../messages                                 Anthropic
//	...:streamGenerateContent, ...:generateContent Gemini
//	.../api/chat, .../api/generate               Ollama
//
// Anything else is Generic. It does not allocate.
func APIForPath(path string) API {
	switch {
	case strings.HasSuffix(path, "/completions"):
		return OpenAIChat
	case strings.HasSuffix(path, "/responses"):
		return Responses
	case strings.HasSuffix(path, "/messages") && !strings.Contains(path, "/threads/") && !strings.Contains(path, "/chat/completions/"):
		// Not an Assistants thread's messages (POST adds one: nothing is
		// generated) nor a stored chat completion's.
		return Anthropic
	case strings.HasSuffix(path, ":streamGenerateContent"), strings.HasSuffix(path, ":generateContent"):
		return Gemini
	case strings.HasSuffix(path, "/api/chat"), strings.HasSuffix(path, "/api/generate"):
		return Ollama
	}
	// GET /v1/responses/{id}?stream=true resumes a Responses stream.
	if i := strings.LastIndexByte(path, '/'); i > 0 && strings.HasSuffix(path[:i], "/responses") && strings.HasPrefix(path[i+1:], "resp_") {
		return Responses
	}
	return Generic
}

// StoredObject reports whether path names a stored object whose usage, if
// its answer shows any, is not the request's: a batch (OpenAI's Batch API,
// Anthropic's message batches: its requests' usage, which no read charges
// either; a cancel charged the whole batch's), or a stored chat completion
// (POST /v1/chat/completions/{id} updates its metadata and answers with it:
// its usage was charged again). Its row and charge count 0 tokens.
//
// Only those shapes match, at the path's end (a route's prefix goes
// before), the id by its provider's prefix: .../batches,
// .../batches/batch_... or msgbatch_..., with /cancel or /results;
// .../chat/completions/chatcmpl-..., with /messages. A generation path with
// a trailing slash (.../chat/completions/), or an Azure deployment named
// batches (/openai/deployments/batches/completions), is none.
func StoredObject(path string) bool {
	rest, ok := objectUnder(path, "/batches")
	if ok && (rest == "" || oneObject(rest, []string{"batch_", "msgbatch_"}, "", "/cancel", "/results")) {
		return true
	}
	rest, ok = objectUnder(path, "/chat/completions")
	return ok && oneObject(rest, []string{"chatcmpl-"}, "", "/messages")
}

// objectUnder returns what follows the last collection (such as
// "/batches") in path, and whether path has it.
func objectUnder(path, collection string) (rest string, ok bool) {
	i := strings.LastIndex(path, collection)
	if i < 0 {
		return "", false
	}
	return path[i+len(collection):], true
}

// oneObject reports whether rest is "/{id}" followed by one of tails ("" for
// nothing), id beginning with one of prefixes.
func oneObject(rest string, prefixes []string, tails ...string) bool {
	id, ok := strings.CutPrefix(rest, "/")
	if !ok {
		return false
	}
	for _, tail := range tails {
		v, ok := strings.CutSuffix(id, tail)
		if !ok || strings.Contains(v, "/") {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(v, p) && len(v) > len(p) {
				return true
			}
		}
	}
	return false
}
