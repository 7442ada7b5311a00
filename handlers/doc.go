// Package handlers serves the relay's HTTP endpoints on Fiber: the relayed
// routes, /healthz and /readyz.
//
// For a relayed request Relay.Handle
//  1. stamps a record and an X-Request-Id, and has storage admit it
//     (Admission: full capture, meta only, or 503 storage_overloaded with
//     Retry-After when not even a row without bodies could be stored),
//  2. finds the route (404 when none),
//  3. authenticates the relay key (401) and the X-Tenant-ID it may name (403),
//  4. checks the body size (413) and the tenant's bucket (429),
//  5. opens the upstream (502/504 before the first byte) and hands the
//     stream to fasthttp, which copies it to the client chunk by chunk.
//
// The server's body limit, steps 2 to 4 (gate.go) and storage admission
// also run when the header of a request that asks for "Expect:
// 100-continue" arrives (ExpectContinue): a request refused there is
// answered and logged before its body is sent, and a token taken there
// goes back to the limiter when the body never comes (earlyDecision).
//
// With Options.SmallStacks, steps 1 to 5 run on a helper goroutine while
// the connection's goroutine waits; the stream is then copied by the
// connection's goroutine, whose stack stays small for as long as the
// stream lasts (handoff.go).
//
// When the request ends, however it ends, its record goes to the sinks
// (ClickHouse rows, metrics, the token budget) and back to its pool.
// Error responses share one JSON shape: {"error":{"type":...,"message":...}}.
package handlers
