// Package usage reads what an LLM response and its request say about
// themselves, by bounded byte scans, never a full JSON decode, with one
// table of rules per provider API (rules.go), shared by the relay's live
// path and `relay reparse`:
//
//   - APIForPath picks the API (OpenAI chat, OpenAI Responses, Anthropic,
//     Gemini, or Generic) from the request path.
//   - ContentScanner finds the first generated content as the response's
//     reads arrive (the first-token clock), without allocating, in an SSE
//     stream or a non-streamed JSON answer (shape.go); FirstTokenChunk
//     runs it over stored chunks.
//   - FindAPI (Find for Generic) and Tokens read the token counts of a
//     whole response, or of its kept head and tail.
//   - StreamErrorScanner finds an error the provider sends inside a 200
//     response (an SSE `event: error`, an event object with a top-level
//     "error" key or starting with "type":"error"), read by read and
//     without allocating;
//     HasStreamError runs it over stored chunks.
//   - Model and RequestModel return the model a request names.
//   - InjectIncludeUsage asks an OpenAI-style streaming request for its
//     final usage chunk.
package usage
