package record

import "sync"

// A large request body goes from the request to the storage block by
// reference (TakeRequestBody): the block holds the request's own body
// buffer, and fasthttp reads the next request into a buffer the storage
// gave back (GiveBodyBuffer) once its block was encoded. A captured 1 MiB
// body is then copied once on its way to storage (into the encoding), not
// twice, and neither side allocates in steady state.

// TakeMin is the smallest captured request body taken by reference;
// smaller ones are copied, which costs less than the hand-over.
const TakeMin = 32 << 10

// bodyBuffersMax bounds the bytes of the buffers kept for reuse: two
// default blocks' worth of bodies (chlog's BatchBytes is 16 MiB).
const bodyBuffersMax = 32 << 20

// bodyBuffers are the body buffers given back, for the next takes.
var bodyBuffers struct {
	mu    sync.Mutex
	list  [][]byte
	bytes int
}

// BodySwapper is a body owner whose body buffer can be exchanged for
// another: *fasthttp.Request is one (SwapBody gives its buffer away and
// reads the next body into the one given).
type BodySwapper interface {
	BodyOwner
	SwapBody(body []byte) []byte
}

// LastReader says that whoever reads r from now on is the last to: no one
// reads it after them, so they may take its body (TakeRequestBody).
// handlers sets it before the last sink; Release clears it.
func (r *Record) LastReader() { r.lastReader = true }

// TakeRequestBody hands the captured request body over by reference. For
// a record read by its last reader (LastReader), with a body of at least
// TakeMin bytes borrowed from a BodySwapper (see BorrowRequestBody), still
// valid, and at least half its buffer's capacity, the owner's buffer
// becomes the caller's (buf, its whole capacity; body is RequestBody, a
// prefix of it) and the owner gets a buffer given back earlier. The record
// no longer has the body (RequestBody is nil): the bytes may be reused as
// soon as the caller gives buf back (GiveBodyBuffer), which is why only
// the last reader may take it. buf is nil when the body is not taken (then
// RequestBody is read and copied as before).
func (r *Record) TakeRequestBody() (body, buf []byte) {
	if r.takenBuf != nil && r.lastReader && r.Capture {
		// Taken from its owner already (KeepBorrowedBody).
		body, buf = r.RequestBody, r.takenBuf
		r.RequestBody, r.takenBuf = nil, nil
		return body, buf
	}
	if !r.lastReader || !r.Capture {
		return nil, nil
	}
	if buf = r.takeOwnerBuffer(); buf == nil {
		return nil, nil
	}
	body = r.RequestBody
	r.RequestBody = nil
	return body, buf
}

// takeOwnerBuffer takes a borrowed body's buffer, whole, from its owner,
// which gets a buffer given back earlier in exchange; RequestBody stays a
// prefix of it. nil, and nothing taken, when the owner cannot swap buffers,
// the body is under TakeMin bytes or no longer the owner's, or the buffer
// holds mostly bytes the record does not keep (a body far past the capture
// limit: the block would hold them all; the part kept is copied instead).
func (r *Record) takeOwnerBuffer() []byte {
	sw, ok := r.bodyFrom.(BodySwapper)
	if !ok || len(r.RequestBody) < TakeMin || !r.BorrowedBodyValid() || cap(sw.Body()) > 2*len(r.RequestBody) {
		return nil
	}
	old := sw.SwapBody(spareBodyBuffer())
	if len(old) < len(r.RequestBody) || &old[0] != &r.RequestBody[0] {
		// Not the borrowed buffer after all (BorrowedBodyValid said it
		// was): give it back untouched.
		GiveBodyBuffer(sw.SwapBody(old))
		return nil
	}
	r.bodyFrom = nil
	return old[:cap(old)]
}

// spareBodyBuffer returns a buffer given back, empty, or nil when none is
// kept.
func spareBodyBuffer() []byte {
	bodyBuffers.mu.Lock()
	defer bodyBuffers.mu.Unlock()
	n := len(bodyBuffers.list)
	if n == 0 {
		return nil
	}
	b := bodyBuffers.list[n-1]
	bodyBuffers.list[n-1] = nil
	bodyBuffers.list = bodyBuffers.list[:n-1]
	bodyBuffers.bytes -= cap(b)
	return b[:0]
}

// GiveBodyBuffer gives back a buffer TakeRequestBody handed over, for a
// later take to give to its owner; the buffers kept are bounded, and one
// past the bound is left to the GC.
func GiveBodyBuffer(b []byte) {
	if cap(b) < TakeMin {
		return
	}
	bodyBuffers.mu.Lock()
	defer bodyBuffers.mu.Unlock()
	if bodyBuffers.bytes+cap(b) > bodyBuffersMax {
		return
	}
	bodyBuffers.list = append(bodyBuffers.list, b[:0])
	bodyBuffers.bytes += cap(b)
}
