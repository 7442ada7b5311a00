package record

import (
	"sync"
	"time"
)

// Kind is how a route's response body is treated.
type Kind uint8

// Route kinds.
const (
	KindSSE Kind = iota // text/event-stream (or a plain JSON answer) from an LLM
	KindRaw             // binary bytes, e.g. audio from a TTS endpoint
	KindWS              // a WebSocket session relayed message by message (see AddMessage)
)

// String returns the config spelling of k.
func (k Kind) String() string {
	switch k {
	case KindRaw:
		return "raw"
	case KindWS:
		return "ws"
	}
	return "sse"
}

// Error types: the fixed, small set used for stream_logs.error_type and the
// relay_errors_total{type} label. The empty string means no error.
const (
	ErrUpstreamConnect = "upstream_connect" // dial or TLS to the upstream failed
	ErrUpstreamTimeout = "upstream_timeout" // no first byte, or silent past the idle timeout
	ErrUpstreamReset   = "upstream_reset"   // the upstream broke the stream after it started
	ErrUpstreamStatus  = "upstream_status"  // the upstream answered 4xx/5xx (relayed as is)
	ErrUpstreamConfig  = "upstream_config"  // the route's provider key is not set
	ErrClientClosed    = "client_closed"    // the client went away mid-stream
	ErrUnauthorized    = "unauthorized"     // missing or unknown relay key
	ErrForbidden       = "forbidden"        // X-Tenant-ID not allowed for the key
	ErrNotFound        = "not_found"        // no route for the path
	ErrRateLimited     = "rate_limited"     // refused by the tenant's bucket
	ErrBodyTooLarge    = "body_too_large"   // request body over the route's limit
	ErrBadRequest      = "bad_request"      // malformed request
	ErrShuttingDown    = "shutting_down"    // arrived while the relay drains
	ErrInternal        = "internal"         // a bug or resource failure in the relay
	// ErrStorageOverloaded: refused (503) because not even a row without
	// bodies could be queued for storage.
	ErrStorageOverloaded = "storage_overloaded"
	// ErrUpstreamStreamError: the upstream answered 200 and then sent an
	// error inside the stream (an SSE `event: error`, an event object
	// with a top-level "error" key or starting with "type":"error", a
	// Gemini array element {"error":...}; see usage.StreamErrorScanner).
	// The status
	// stays 200: it is what the client got.
	ErrUpstreamStreamError = "upstream_stream_error"
	// ErrClientProtocolError, ErrUpstreamProtocolError: a WebSocket
	// session's side broke the protocol (a close frame with a code never
	// sent on the wire such as 1006, an unmasked client frame, a reserved
	// opcode or bit): it got 1002, the other side the relay's close.
	ErrClientProtocolError   = "client_protocol_error"
	ErrUpstreamProtocolError = "upstream_protocol_error"
)

// Reasons for Record.TruncatedReason (stream_logs.truncated_reason).
const (
	TruncMaxCapture    = "max_capture_bytes" // the route's per-request capture limit
	TruncStorageBudget = "storage_budget"    // storage over max_buffer_bytes, or its spool 3/4 full with ClickHouse: meta only
)

// ErrorTypes lists every error type, for metrics that pre-register labels.
var ErrorTypes = []string{
	ErrUpstreamConnect, ErrUpstreamTimeout, ErrUpstreamReset, ErrUpstreamStatus,
	ErrUpstreamConfig, ErrClientClosed, ErrUnauthorized, ErrForbidden, ErrNotFound,
	ErrRateLimited, ErrBodyTooLarge, ErrBadRequest, ErrShuttingDown, ErrInternal,
	ErrStorageOverloaded, ErrUpstreamStreamError, ErrClientProtocolError, ErrUpstreamProtocolError,
}

// IDLen is the length of a request id in bytes (hex characters).
const IDLen = 32

// None marks a duration that was never reached (no first byte, no token).
const None time.Duration = -1

// Record is everything the relay knows about one request once it has ended.
type Record struct {
	ID    [IDLen]byte // request id, lower-case hex; also the X-Request-Id header
	Start time.Time   // when the request was received (wall clock)

	Route    string // configured route name; "" when no route matched
	Kind     Kind
	Capture  bool   // full capture: request body and response chunks are stored
	Tenant   string // tenant decided by the relay key (and X-Tenant-ID)
	KeyID    string // short hash of the relay key, never the key itself
	Instance string // relay instance name
	Method   string
	Path     string // request path without the query string
	Upstream string // upstream base URL

	Status    int    // status sent to the client
	ErrorType string // one of the Err* constants, "" for none

	TTFB     time.Duration // upstream first byte; None if never
	TTFT     time.Duration // first content token (sse) or audio byte (raw); None if never
	Duration time.Duration // until the last byte went to the client

	BytesIn int64 // request body bytes
	// BytesInDeclared says BytesIn is the Content-Length a request refused
	// before its body was read declared, not bytes received: the row keeps
	// it (what the client meant to send), the byte counters do not.
	BytesInDeclared bool
	BytesOut        int64 // response body bytes relayed toward the client (counted as read, before the write)
	ChunkCount      int   // response body reads relayed toward the client

	Model     string // from the request body, filled when the request ends
	TokensIn  int64  // from the response's usage object; -1 when absent
	TokensOut int64  // -1 when absent

	ClientIP  string
	UserAgent string

	RequestHeaders  []byte // JSON object of the client's headers, secrets redacted
	ResponseHeaders []byte // JSON object of the upstream's headers, secrets redacted
	RequestBody     []byte // at most the capture limit
	Chunks          Chunks // response chunks (data only when Capture is set)
	Truncated       bool   // capture stopped at the limit; the stream went on
	// TruncatedReason says why capture stopped or never began: "" when not
	// truncated, TruncMaxCapture (the per-request limit) by default,
	// TruncStorageBudget when storage was over its memory budget.
	TruncatedReason string

	// Budget, when set (by the storage sink at admission), is charged for
	// the bytes the record captures while the request runs; Charged is what
	// it holds for this record, handed over when the row is stored.
	Budget  Budget
	Charged int64

	// Window keeps the head and tail of the part of an sse response that
	// capture did not keep (capture meta, past max_capture_bytes, a storage
	// budget), for its token counts. nil while every response byte is in
	// Chunks.Data: a fully captured stream costs no window. Pooled, a fixed
	// array: no allocation in steady state, no budget charge.
	Window *Window

	captureLimit int
	starved      bool // Budget refused a charge: capture has stopped for good
	// chunksCut: the response's capture stopped at the limit (its bytes,
	// or its chunk times). Truncated says that of either direction; a
	// request body cut at the limit leaves the response's capture whole.
	chunksCut bool
	// bodyFrom is where a borrowed RequestBody lives (BorrowRequestBody);
	// nil when RequestBody is the record's own buffer.
	bodyFrom BodyOwner
	// lastReader: whoever reads the record now is the last to (see
	// LastReader); only then may the body be taken.
	lastReader bool
	// ownBody is the record's own body buffer, set aside while RequestBody
	// is borrowed or taken (KeepBorrowedBody), for its next use.
	ownBody []byte
	// takenBuf is the owner's body buffer KeepBorrowedBody took, whole;
	// RequestBody is a prefix of it.
	takenBuf []byte
}

// BodyOwner holds the bytes of a borrowed request body: *fasthttp.Request
// is one. Body returns its current body; once that is no longer the
// borrowed slice, the bytes are no longer the record's to read.
type BodyOwner interface {
	Body() []byte
}

// Budget is the storage memory budget a record's capture is charged
// against (chlog implements it).
type Budget interface {
	// Charge takes n bytes for r (adding them to r.Charged) and reports
	// whether they were available; on false nothing is taken.
	Charge(r *Record, n int) bool
}

// charge asks the budget for n bytes; without a budget it always succeeds.
// A refusal stops capture for good: the row says truncated, reason
// TruncStorageBudget (unless an earlier reason was given).
func (r *Record) charge(n int) bool {
	if r.Budget == nil || r.Budget.Charge(r, n) {
		return true
	}
	r.starved = true
	r.Truncated = true
	if r.TruncatedReason == "" {
		r.TruncatedReason = TruncStorageBudget
	}
	return false
}

// metaOnly makes a record whose request body the budget refused a meta-only
// one, as storage degrades a request at admission: neither body nor chunks
// are stored, and the chunk times still are (each growth of theirs asks the
// budget again; a refusal then stops them).
func (r *Record) metaOnly() {
	r.Capture = false
	r.starved = false
}

// Chunks are the captured response chunks: the bytes of chunk i are
// Data[Ends[i-1]:Ends[i]] and arrived AtMS[i] milliseconds after Start.
type Chunks struct {
	Data []byte
	Ends []uint32
	AtMS []uint32
}

// Len returns the number of captured chunks.
func (c *Chunks) Len() int { return len(c.AtMS) }

// Chunk returns the bytes of chunk i (empty when data was not captured).
func (c *Chunks) Chunk(i int) []byte {
	if i >= len(c.Ends) {
		return nil
	}
	start := uint32(0)
	if i > 0 {
		start = c.Ends[i-1]
	}
	return c.Data[start:c.Ends[i]]
}

// maxChunkTimes bounds the chunk arrival times kept per request, so a
// days-long audio stream cannot grow a record without limit.
const maxChunkTimes = 1 << 20

// keepCap is the largest buffer a released record keeps; larger ones are
// dropped so that one huge stream does not pin memory in the pool.
const keepCap = 64 << 10

var pool = sync.Pool{New: func() any { return new(Record) }}

// Acquire returns an empty record from the pool. captureLimit bounds the
// bytes captured per direction (request body, response chunks).
func Acquire(captureLimit int) *Record {
	r := pool.Get().(*Record)
	r.captureLimit = captureLimit
	r.TTFB, r.TTFT = None, None
	r.TokensIn, r.TokensOut = -1, -1
	return r
}

// Release resets r and returns it to the pool.
func Release(r *Record) {
	if r.Window != nil {
		releaseWindow(r.Window)
	}
	reqH, respH, body := r.RequestHeaders[:0], r.ResponseHeaders[:0], r.RequestBody[:0]
	if r.bodyFrom != nil || r.takenBuf != nil || r.ownBody != nil {
		body = r.ownBody[:0] // borrowed or taken: never the pool's to keep
	}
	if r.takenBuf != nil {
		GiveBodyBuffer(r.takenBuf)
	}
	chunks := Chunks{Data: r.Chunks.Data[:0], Ends: r.Chunks.Ends[:0], AtMS: r.Chunks.AtMS[:0]}
	*r = Record{}
	if cap(reqH) <= keepCap {
		r.RequestHeaders = reqH
	}
	if cap(respH) <= keepCap {
		r.ResponseHeaders = respH
	}
	if cap(body) <= keepCap {
		r.RequestBody = body
	}
	if cap(chunks.Data) <= keepCap {
		r.Chunks.Data = chunks.Data
	}
	if cap(chunks.AtMS) <= keepCap/4 {
		r.Chunks.Ends, r.Chunks.AtMS = chunks.Ends, chunks.AtMS
	}
	pool.Put(r)
}

// RetainedBytes is the capacity of the capture buffers r kept from the
// pool (Release keeps them up to keepCap each), which capture fills before
// it grows them: a budget charges it at admission, as each growth is
// charged (growBytes), so that no captured byte goes uncounted.
func (r *Record) RetainedBytes() int {
	return cap(r.RequestBody) + cap(r.Chunks.Data) + 4*cap(r.Chunks.Ends) + 4*cap(r.Chunks.AtMS)
}

// DropRetained lets go of the buffers RetainedBytes counts (a budget with
// no room for them): capture grows new ones, each growth charged.
func (r *Record) DropRetained() {
	r.RequestBody, r.Chunks = nil, Chunks{}
}

// CaptureLimit returns the per-direction capture limit in bytes.
func (r *Record) CaptureLimit() int { return r.captureLimit }

// SetRequestBody captures a copy of the request body up to the capture
// limit. When the budget has no room for it, nothing is captured and
// capture stops.
func (r *Record) SetRequestBody(b []byte) {
	trunc := false
	if len(b) > r.captureLimit {
		b = b[:r.captureLimit]
		trunc = true
	}
	r.dropBorrowed()
	r.RequestBody = r.RequestBody[:0]
	if !growBytes(r, &r.RequestBody, len(b)) {
		r.metaOnly()
		return
	}
	r.Truncated = r.Truncated || trunc
	r.RequestBody = append(r.RequestBody, b...)
}

// BorrowRequestBody captures the request body up to the capture limit by
// reference, without a copy: b must be owner's current body (owner.Body())
// and stay unchanged for as long as owner says so, which the record checks
// with BorrowedBodyValid before it is read after the request handler
// returned. With Capture set the budget is charged len(b) (what the stored
// row will hold), not the capacity of a buffer the record does not own;
// when it has no room, nothing is captured and capture stops, as in
// SetRequestBody. Without Capture the body is kept only for reading (the
// model), not stored, and not charged.
func (r *Record) BorrowRequestBody(b []byte, owner BodyOwner) {
	trunc := false
	if len(b) > r.captureLimit {
		b = b[:r.captureLimit]
		trunc = true
	}
	r.dropBorrowed()
	if len(b) > 0 && r.Capture && !r.charge(len(b)) {
		r.RequestBody = r.RequestBody[:0]
		r.metaOnly()
		return
	}
	// Without Capture nothing is stored: a body cut for reading is no
	// truncated capture.
	r.Truncated = r.Truncated || trunc && r.Capture
	if len(b) == 0 {
		r.RequestBody = r.RequestBody[:0]
		return
	}
	if r.ownBody == nil {
		r.ownBody = r.RequestBody[:0]
	}
	r.RequestBody = b
	r.bodyFrom = owner
}

// BorrowedBodyValid reports whether a borrowed request body (see
// BorrowRequestBody) is still its owner's; when not, RequestBody is
// dropped (the bytes may belong to another request by now) and the
// capture charge for it stays with the record. It is true when the body
// is not borrowed.
func (r *Record) BorrowedBodyValid() bool {
	if r.bodyFrom == nil {
		return true
	}
	cur := r.bodyFrom.Body()
	if len(cur) >= len(r.RequestBody) && (len(r.RequestBody) == 0 || &cur[0] == &r.RequestBody[0]) {
		return true
	}
	r.RequestBody = nil
	r.bodyFrom = nil
	return false
}

// KeepBorrowedBody makes a borrowed request body the record's own, for a
// record that outlives its owner's request (a stream written after the
// server let go of the request, handlers). A body of at least TakeMin
// bytes whose owner can swap buffers is taken, its owner's buffer and all
// (the owner gets one given back earlier, as in TakeRequestBody), so that
// it still reaches the storage by reference; a smaller one is copied into
// the record's own buffer. A body its owner no longer has is dropped, as
// BorrowedBodyValid does.
func (r *Record) KeepBorrowedBody() {
	if r.bodyFrom == nil || !r.BorrowedBodyValid() {
		return
	}
	if r.takenBuf = r.takeOwnerBuffer(); r.takenBuf != nil {
		return
	}
	r.RequestBody = append(r.ownBody[:0], r.RequestBody...)
	r.ownBody, r.bodyFrom = nil, nil
}

// dropBorrowed forgets a borrowed body, so that RequestBody can take the
// record's own buffer again.
func (r *Record) dropBorrowed() {
	if r.bodyFrom != nil {
		r.RequestBody = nil
		r.bodyFrom = nil
	}
}

// AddChunk accounts one response chunk that arrived at offset at from Start:
// its size and time always, its bytes when Capture is set and the limit
// allows. It allocates only while the record's buffers grow.
func (r *Record) AddChunk(b []byte, at time.Duration) {
	r.ChunkCount++
	r.BytesOut += int64(len(b))
	if !r.addChunk(nil, b, at) && r.Kind == KindSSE {
		if r.Window == nil {
			// The first byte capture did not keep: the window starts here,
			// its head seeded with the captured start of the response.
			r.Window = acquireWindow()
			r.Window.Seed(r.Chunks.Data[:min(len(r.Chunks.Data), WindowHead)])
		}
		r.Window.Write(b)
	}
}

// NeedsChunkBytes reports whether AddChunk still has a use for the bytes
// of the response's next chunks: to capture them, or (for an SSE response)
// to keep its usage window. When it has none, AddChunkLen accounts a chunk
// by its length alone, and its bytes need never enter the process.
func (r *Record) NeedsChunkBytes() bool {
	return r.Kind == KindSSE || r.Capture && !r.chunksCut && !r.starved
}

// AddChunkLen is AddChunk for a chunk of n bytes that the record would not
// keep (NeedsChunkBytes is false): it counts them and stamps their
// arrival, as AddChunk would.
func (r *Record) AddChunkLen(n int, at time.Duration) {
	r.ChunkCount++
	r.BytesOut += int64(n)
	r.addChunk(nil, nil, at)
}

// addChunk keeps b's time and, when capturing, its bytes (after prefix,
// which is stored with them); it reports whether the bytes went into
// Chunks.Data.
func (r *Record) addChunk(prefix, b []byte, at time.Duration) (captured bool) {
	// Arrival times cost 8 bytes a chunk (end offset and time); they count
	// against the capture limit too, so a long audio stream in meta mode
	// cannot grow its record without bound.
	if r.starved {
		return false
	}
	if n := len(r.Chunks.AtMS); n >= maxChunkTimes || 8*n >= r.captureLimit {
		r.Truncated, r.chunksCut = true, true
		return false
	}
	if r.Capture {
		// Times without bytes would no longer line up with the data.
		if r.chunksCut {
			return false
		}
		if len(r.Chunks.Data)+len(prefix)+len(b) > r.captureLimit {
			r.Truncated, r.chunksCut = true, true
			return false
		}
	}
	if r.Capture && !growBytes(r, &r.Chunks.Data, len(prefix)+len(b)) {
		return false
	}
	if !growTimes(r, &r.Chunks.Ends) || !growTimes(r, &r.Chunks.AtMS) {
		return false
	}
	if r.Capture {
		r.Chunks.Data = append(r.Chunks.Data, prefix...)
		r.Chunks.Data = append(r.Chunks.Data, b...)
	}
	r.Chunks.Ends = append(r.Chunks.Ends, uint32(len(r.Chunks.Data)))
	r.Chunks.AtMS = append(r.Chunks.AtMS, uint32(at/time.Millisecond))
	return r.Capture
}

// The capture buffers grow here rather than in append, so that the budget
// is charged for the memory they really take (capacity, not length) before
// it is taken, never past the capture limit (see nextByteCap).

// growBytes makes room for n more bytes in *s; false when the budget
// refused (then *s is unchanged and capture has stopped).
func growBytes(r *Record, s *[]byte, n int) bool {
	need := len(*s) + n
	if need <= cap(*s) {
		return true
	}
	c := max(need, min(nextByteCap(cap(*s)), r.captureLimit))
	if !r.charge(c - cap(*s)) {
		return false
	}
	ns := make([]byte, len(*s), c)
	copy(ns, *s)
	*s = ns
	return true
}

// byteCaps are the capacities a byte buffer grows through past
// doubleBelow: about a quarter more each step, each one of Go's allocation
// size classes (runtime/sizeclasses.go), so that no byte of the class is
// wasted; past the last one, a quarter more in whole 8 KiB pages.
var byteCaps = [...]int{5376, 6784, 8192, 10240, 12288, 16384, 20480, 24576, 32768}

// doubleBelow is the capacity up to which buffers double.
const doubleBelow = 4096

// nextByteCap returns the capacity after c: doubling from 1 KiB up to
// doubleBelow, then growing by about a quarter. An open stream holds its
// captured chunks until it ends: doubling leaves a buffer up to half
// empty (a 4.1 KiB stream held 8 KiB), a quarter at most a fifth.
func nextByteCap(c int) int {
	if c < doubleBelow {
		return min(max(2*c, 1024), doubleBelow)
	}
	for _, bc := range byteCaps {
		if bc > c {
			return bc
		}
	}
	const page = 8 << 10
	return (c + c/4 + page - 1) / page * page
}

// growTimes makes room for one more chunk time (or end offset) in *s.
func growTimes(r *Record, s *[]uint32) bool {
	if len(*s) < cap(*s) {
		return true
	}
	c := max(len(*s)+1, min(max(2*cap(*s), 64), r.captureLimit/8+1, maxChunkTimes))
	if !r.charge(4 * (c - cap(*s))) {
		return false
	}
	ns := make([]uint32, len(*s), c)
	copy(ns, *s)
	*s = ns
	return true
}

// IDString returns the request id as a string (allocates).
func (r *Record) IDString() string { return string(r.ID[:]) }
