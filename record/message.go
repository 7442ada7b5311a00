package record

import "time"

// A WebSocket session (KindWS) keeps every message of both directions in
// Chunks, in arrival order, each stored behind a two-byte prefix: its
// direction, then its type. The prefix is part of the stored chunk (and
// of the capture limit) but not of BytesIn/BytesOut, which count payload
// bytes. A close frame's chunk holds its code in decimal, a space and its
// reason ("<c1000 done").
const (
	DirClient   byte = '>' // client to upstream
	DirUpstream byte = '<' // upstream to client

	MsgText   byte = 't'
	MsgBinary byte = 'b'
	MsgPing   byte = 'p'
	MsgPong   byte = 'o'
	MsgClose  byte = 'c'
)

// The members a session's ResponseHeaders gain when it ends: the first
// close code (1006 when no side nor the relay sent one), its reason as the
// sides got it, and who closed ("client", "upstream" or "relay").
const (
	HeaderWSCloseCode   = ":ws-close-code"
	HeaderWSCloseReason = ":ws-close-reason"
	HeaderWSClosedBy    = ":ws-closed-by"
)

// AddMessage accounts one WebSocket message of direction dir (DirClient or
// DirUpstream) and type typ (Msg*) that arrived at offset at from Start:
// its payload size in BytesIn (client) or BytesOut (upstream), its time,
// and its prefixed bytes when Capture is set and the limit and budget
// allow, as AddChunk does for a stream.
func (r *Record) AddMessage(dir, typ byte, payload []byte, at time.Duration) {
	r.ChunkCount++
	if dir == DirClient {
		r.BytesIn += int64(len(payload))
	} else {
		r.BytesOut += int64(len(payload))
	}
	prefix := [2]byte{dir, typ}
	r.addChunk(prefix[:], payload, at)
}
