// Package mockllm is a mock upstream for the relay: it speaks just enough of
// the OpenAI chat completions, Anthropic messages and OpenAI speech APIs to
// exercise streaming, and lets each request script its own misbehaviour.
//
// It serves tests, the demo and throughput benchmarks, where it shares the
// cores with the relay and the load generator, so streamed events are built
// once per request and each chunk costs one append and one flush.
//
// Usage:
//
//	srv, base, err := mockllm.Listen("127.0.0.1:0", mockllm.Options{RequireKey: "k"})
//	if err != nil { ... }
//	defer srv.Close()
//	// POST base+"/v1/chat/completions" with {"stream":true}
//
// # Endpoints
//
//   - POST /v1/chat/completions: OpenAI chat completions. With "stream":true
//     it sends a role frame, N content chunks ("tok0 ", "tok1 ", ...), a
//     finish frame, a usage chunk when "stream_options":{"include_usage":true},
//     and "data: [DONE]". Otherwise one chat.completion JSON object.
//   - POST /v1/messages: Anthropic messages. With "stream":true it sends
//     message_start, content_block_start, ping, N content_block_delta events,
//     content_block_stop, message_delta and message_stop. Otherwise one
//     message JSON object.
//   - POST /v1/responses: OpenAI Responses. With "stream":true it sends
//     response.created, response.in_progress, output_item.added,
//     content_part.added, N response.output_text.delta events, the done
//     events and response.completed with usage; otherwise the response
//     object (responses.go).
//   - POST /v1/audio/speech: N chunks of pseudo-random bytes as audio/mpeg, or
//     audio/pcm when "response_format":"pcm"; AudioBytes reproduces them.
//   - GET /healthz: 200 "ok".
//   - GET /mock/requests: the recorded requests and counters as JSON.
//   - anything else: 404 with a JSON error.
//
// Prompt token counts are len(body)/4, at least 1. Every response except
// /healthz and /mock/requests is recorded (see Server.Requests).
//
// # Control headers
//
// Each request may carry these headers; a bad value is answered with 400 and
// a JSON error naming the header.
//
//   - X-Mock-Chunks: N, the number of content chunks or audio chunks
//     (default 20 for SSE, 16 for audio, at most 1,000,000).
//   - X-Mock-Delay-Ms: D, milliseconds between chunks, fractions allowed
//     (default 0, at most 60000).
//   - X-Mock-First-Byte-Delay-Ms: D, milliseconds before the response
//     headers (default 0, at most 60000).
//   - X-Mock-Status: code, answer with this status (200..599) and the body
//     {"error":{"type":"mock_error","message":"mock status <code>"}}.
//   - X-Mock-Stall-After: K, after K chunks stop sending but keep the
//     connection open until the client leaves or Options.StallTimeout
//     passes, then drop it. K=0 stalls right after the headers, before the
//     role frame or message_start; K=N stalls after the last chunk, before
//     the closing events; K>N never stalls.
//   - X-Mock-Reset-After: K, like X-Mock-Stall-After but abort the
//     connection with a TCP RST instead. Exclusive with X-Mock-Stall-After.
//   - X-Mock-Chunk-Bytes: B, the size of each audio chunk (default 4096,
//     1..1048576).
//   - X-Mock-Length: 1, send audio with a Content-Length (the whole size,
//     known up front) instead of chunked framing; chunks are still written
//     and flushed one at a time. 0 (the default): chunked.
//   - X-Mock-Request-Id: V, a streamed answer carries X-Request-Id: V, as
//     OpenAI's answers carry their own request id.
//
// A non-streaming response is one piece, so on it X-Mock-Stall-After and
// X-Mock-Reset-After take effect before the headers whatever K is, and
// X-Mock-Delay-Ms is ignored.
//
// # Authentication
//
// When Options.RequireKey is set, API requests must carry
// "Authorization: Bearer <key>" or "x-api-key: <key>", else 401.
// /healthz and /mock/requests are always open.
package mockllm
