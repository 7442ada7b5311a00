package chlog

import (
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/record"
)

// protocolVersion is the revision the Native blocks are encoded for: that of
// ClickHouse 18.16, which current servers still read.
const protocolVersion = 54412

// block is one columnar Native block being filled. Its column buffers live as
// long as the writer: blocks are recycled and Reset after encoding.
type block struct {
	seq   uint64 // spool and WAL name; increases over restarts
	rows  int
	bytes int // approximate encoded size of the rows
	held  int // bytes charged to the memory budget for it (writer.go)
	// uncharged is spare capacity the block brought from its last use
	// (recycled): memory no row has taken yet, so not charged (writer.go).
	uncharged   int
	first, last [record.IDLen]byte

	id, route, tenant, keyID, model, method, path, upstream proto.ColStr
	created                                                 proto.ColDateTime
	status                                                  proto.ColUInt16
	errType                                                 proto.ColStr
	ttfb, ttft                                              *proto.ColNullable[uint32]
	duration                                                proto.ColUInt32
	bytesIn, bytesOut                                       proto.ColUInt64
	chunkCount                                              proto.ColUInt32
	tokensIn, tokensOut                                     *proto.ColNullable[uint64]
	reqHeaders, respHeaders                                 proto.ColStr
	reqBody                                                 bodyCol
	chunks                                                  *proto.ColArr[string]
	chunkData                                               *proto.ColStr
	offsets                                                 *proto.ColArr[uint32]
	offsetData                                              *proto.ColUInt32
	truncated                                               proto.ColUInt8
	clientIP, userAgent, instance                           proto.ColStr
	truncReason                                             proto.ColStr

	input   proto.Input
	scratch sortScratch // sortRows' buffers
	gen     uint64      // resets so far: the grower's block is the one it measured
}

func newBlock() *block {
	b := &block{
		ttfb:       proto.NewColNullable[uint32](new(proto.ColUInt32)),
		ttft:       proto.NewColNullable[uint32](new(proto.ColUInt32)),
		tokensIn:   proto.NewColNullable[uint64](new(proto.ColUInt64)),
		tokensOut:  proto.NewColNullable[uint64](new(proto.ColUInt64)),
		chunkData:  new(proto.ColStr),
		offsetData: new(proto.ColUInt32),
	}
	b.chunks = proto.NewArray[string](b.chunkData)
	b.offsets = proto.NewArray[uint32](b.offsetData)
	// Order and names must match columns in schema.go.
	b.input = proto.Input{
		{Name: "request_id", Data: &b.id},
		{Name: "created_at", Data: &b.created},
		{Name: "route", Data: &b.route},
		{Name: "tenant_id", Data: &b.tenant},
		{Name: "key_id", Data: &b.keyID},
		{Name: "model", Data: &b.model},
		{Name: "method", Data: &b.method},
		{Name: "path", Data: &b.path},
		{Name: "upstream", Data: &b.upstream},
		{Name: "status", Data: &b.status},
		{Name: "error_type", Data: &b.errType},
		{Name: "ttfb_ms", Data: b.ttfb},
		{Name: "ttft_ms", Data: b.ttft},
		{Name: "duration_ms", Data: &b.duration},
		{Name: "bytes_in", Data: &b.bytesIn},
		{Name: "bytes_out", Data: &b.bytesOut},
		{Name: "chunk_count", Data: &b.chunkCount},
		{Name: "tokens_in", Data: b.tokensIn},
		{Name: "tokens_out", Data: b.tokensOut},
		{Name: "request_headers", Data: &b.reqHeaders},
		{Name: "response_headers", Data: &b.respHeaders},
		{Name: "request_body", Data: &b.reqBody},
		{Name: "response_chunks", Data: b.chunks},
		{Name: "chunk_offsets_ms", Data: b.offsets},
		{Name: "truncated", Data: &b.truncated},
		{Name: "client_ip", Data: &b.clientIP},
		{Name: "user_agent", Data: &b.userAgent},
		{Name: "instance", Data: &b.instance},
		{Name: "truncated_reason", Data: &b.truncReason},
	}
	return b
}

// rowOverhead approximates the fixed-size columns and length prefixes of a row.
const rowOverhead = 128

// add copies r into the block. It allocates only while column buffers grow.
func (b *block) add(r *record.Record) {
	if b.rows == 0 {
		b.first = r.ID
	}
	b.last = r.ID
	b.rows++
	n := rowOverhead
	n += appendStr(&b.id, r.ID[:])
	b.created.Append(r.Start)
	n += appendString(&b.route, r.Route)
	n += appendString(&b.tenant, r.Tenant)
	n += appendString(&b.keyID, r.KeyID)
	n += appendString(&b.model, r.Model)
	n += appendString(&b.method, r.Method)
	n += appendString(&b.path, r.Path)
	n += appendString(&b.upstream, r.Upstream)
	b.status.Append(uint16(clamp(int64(r.Status), math.MaxUint16)))
	n += appendString(&b.errType, r.ErrorType)
	b.ttfb.Append(millis(r.TTFB))
	b.ttft.Append(millis(r.TTFT))
	b.duration.Append(uint32(clamp(int64(r.Duration/time.Millisecond), math.MaxUint32)))
	b.bytesIn.Append(uint64(clamp(r.BytesIn, math.MaxInt64)))
	b.bytesOut.Append(uint64(clamp(r.BytesOut, math.MaxInt64)))
	b.chunkCount.Append(uint32(clamp(int64(r.ChunkCount), math.MaxUint32)))
	b.tokensIn.Append(tokens(r.TokensIn))
	b.tokensOut.Append(tokens(r.TokensOut))
	n += appendStr(&b.reqHeaders, r.RequestHeaders)
	n += appendStr(&b.respHeaders, r.ResponseHeaders)
	if r.Capture {
		n += b.reqBody.appendBody(r)
		n += b.appendChunks(&r.Chunks)
	} else {
		b.reqBody.appendEmpty()
	}
	b.chunks.Offsets.Append(uint64(b.chunkData.Rows()))
	*b.offsetData = append(*b.offsetData, r.Chunks.AtMS...)
	b.offsets.Offsets.Append(uint64(len(*b.offsetData)))
	n += 4 * len(r.Chunks.AtMS)
	var t uint8
	if r.Truncated {
		t = 1
	}
	b.truncated.Append(t)
	n += appendString(&b.clientIP, r.ClientIP)
	n += appendString(&b.userAgent, r.UserAgent)
	n += appendString(&b.instance, r.Instance)
	reason := r.TruncatedReason
	if reason == "" && r.Truncated {
		reason = record.TruncMaxCapture
	}
	n += appendString(&b.truncReason, reason)
	b.bytes += n
}

// encode appends the block in raw Native format (the body of an
// INSERT ... FORMAT Native, and a spool file's contents) to buf, its rows
// first put in the table's key order (sortRows: first and last then name
// the rows at either end of the encoding).
func (b *block) encode(buf *proto.Buffer) error {
	b.sortRows()
	return proto.Block{Columns: len(b.input), Rows: b.rows}.EncodeRawBlock(buf, protocolVersion, b.input)
}

func (b *block) reset() {
	b.gen++
	b.input.Reset()
	b.rows, b.bytes = 0, 0
	b.first, b.last = [record.IDLen]byte{}, [record.IDLen]byte{}
}

// appendChunks adds the captured chunks of a row to the chunk strings: its
// bytes in one copy (they lie back to back in c.Data), then a position per
// chunk.
func (b *block) appendChunks(c *record.Chunks) int {
	if len(c.Ends) == 0 {
		return 0
	}
	data := c.Data[:c.Ends[len(c.Ends)-1]]
	col := b.chunkData
	base := len(col.Buf)
	growBuf(&col.Buf, len(data))
	col.Buf = append(col.Buf, data...)
	if need := len(col.Pos) + len(c.Ends); need > cap(col.Pos) {
		col.Pos = slices.Grow(col.Pos, max(need, 2*cap(col.Pos))-len(col.Pos))
	}
	start := 0
	for _, end := range c.Ends {
		col.Pos = append(col.Pos, proto.Position{Start: base + start, End: base + int(end)})
		start = int(end)
	}
	return len(data) + 8*len(c.Ends)
}

// appendBig appends v as one string of c, growing its bytes by growBuf.
func appendBig(c *proto.ColStr, v []byte) int {
	growBuf(&c.Buf, len(v))
	c.AppendBytes(v)
	return len(v)
}

// growBuf makes room for n more bytes in *buf: by a quarter, or to just
// what is needed when that is more. Tighter than append's growth (which
// may overshoot a large need by a quarter), as the budget charges
// capacity; a recycled block (writer.go) needs no growth at all.
func growBuf(buf *[]byte, n int) {
	need := len(*buf) + n
	c := cap(*buf)
	if need <= c {
		return
	}
	nb := make([]byte, len(*buf), max(need, c+c/4))
	copy(nb, *buf)
	*buf = nb
}

func appendStr(c *proto.ColStr, v []byte) int {
	c.AppendBytes(v)
	return len(v)
}

func appendString(c *proto.ColStr, v string) int {
	c.Append(v)
	return len(v)
}

func millis(d time.Duration) proto.Nullable[uint32] {
	if d < 0 {
		return proto.Nullable[uint32]{}
	}
	return proto.NewNullable(uint32(clamp(int64(d/time.Millisecond), math.MaxUint32)))
}

func tokens(n int64) proto.Nullable[uint64] {
	if n < 0 {
		return proto.Nullable[uint64]{}
	}
	return proto.NewNullable(uint64(n))
}

func clamp(v, hi int64) int64 {
	if v < 0 {
		return 0
	}
	if v > hi {
		return hi
	}
	return v
}

// blockSizes are the lengths a block's growing buffers reached: what a
// new block is given (presize) when it follows it.
type blockSizes struct {
	chunkData, reqBody, reqHeaders, respHeaders, pos int
}

// sizes returns b's blockSizes, or none when b is empty or its buffers
// hold more than most bytes in all. It must be taken while b is still the
// writer's own, before it is handed off.
func (b *block) sizes(most int) blockSizes {
	if b.rows == 0 || blockCap(b) > most {
		return blockSizes{}
	}
	return blockSizes{len(b.chunkData.Buf), len(b.reqBody.Buf), len(b.reqHeaders.Buf), len(b.respHeaders.Buf), len(b.chunkData.Pos)}
}

// presize gives a new block's growing buffers the sizes the block before
// it reached, plus an eighth: in a burst, when no recycled block is free,
// each new block would otherwise grow from nothing by a quarter at a time,
// allocating, zeroing and copying its bytes several times over.
func (b *block) presize(s blockSizes) {
	if s == (blockSizes{}) {
		return
	}
	sized := func(n int) []byte { return make([]byte, 0, n+n/8) }
	b.chunkData.Buf = sized(s.chunkData)
	b.reqBody.Buf = sized(s.reqBody)
	b.reqHeaders.Buf = sized(s.reqHeaders)
	b.respHeaders.Buf = sized(s.respHeaders)
	b.chunkData.Pos = make([]proto.Position, 0, s.pos+s.pos/8)
}
