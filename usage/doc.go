// Package usage finds token counts and request facts in captured bytes by
// bounded byte scans, never a full JSON decode, so the relay can call it
// once per finished request without parsing cost on the hot path.
//
//   - Find scans a response (a whole SSE stream or a JSON body) for the
//     OpenAI or Anthropic usage object.
//   - Model returns the top-level "model" of a JSON request body.
//   - InjectIncludeUsage asks an OpenAI-style streaming request for its
//     final usage chunk.
package usage
