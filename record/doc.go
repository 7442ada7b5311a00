// Package record holds the per-request record: the one type that the relay
// path (handlers, upstream) produces and the sinks (chlog, metrics, quota)
// consume when a request ends.
//
// A Record is taken from a pool with Acquire, filled while the request runs,
// handed to the sinks once it is finished, and returned with Release. Sinks
// copy what they keep before they return: nothing may hold a *Record after
// Release.
//
// Chunk capture copies each response chunk once into the record's own
// buffers, which keep their capacity across pool round trips, so the steady
// state allocates nothing per chunk.
package record
