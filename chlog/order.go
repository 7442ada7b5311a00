package chlog

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/ClickHouse/ch-go/proto"
)

// Rows are added to a block as requests end, so a block's rows are in the
// order requests finished, not in the table's sorting key (route,
// created_at: schema.go): a long stream started before a short one ends
// after it, and routes interleave. ClickHouse sorts each inserted block
// that is out of key order before it writes the part, permuting every
// column, bodies and chunks included (on 18.16, ~20% of the insert's CPU
// with the bench's rows: 23 against 18 µs a row). The relay puts the rows
// in key order before it encodes a block instead: the server then finds it
// sorted (MergeTreeDataWriterBlocksAlreadySorted) and skips the sort.
// Here that costs a sort of row numbers and a permutation of each column's
// positions and fixed-size values; the strings' bytes do not move, as a
// ColStr writes its rows in the order of its positions.

// sortScratch holds a block's buffers for sortRows, kept with the block.
type sortScratch struct {
	perm []int
	pos  []proto.Position
	u8   []uint8
	u16  []uint16
	u32  []uint32
	u64  []uint64
	dt   []proto.DateTime
	refs [][]byte // the request bodies taken by reference (bodycol.go)
	offs proto.ColUInt64
	// The arrays' elements (chunks, chunk times), as many as their rows
	// hold together: buffers of their own, so that each keeps its size.
	chunkPos []proto.Position
	chunkAt  []uint32
}

// sortRows puts b's rows in (route, created_at) order, keeping the order
// of rows with equal keys, and points first and last at the rows now at
// either end. A block already in order is left as it is. It allocates
// only while its scratch buffers grow.
func (b *block) sortRows() {
	if b.rows < 2 || b.keySorted() {
		return
	}
	s := &b.scratch
	perm := s.perm[:0]
	for i := range b.rows {
		perm = append(perm, i)
	}
	s.perm = perm
	// Row numbers break ties, so the cheaper unstable sort gives a stable order.
	slices.SortFunc(perm, func(i, j int) int {
		if c := b.compareKeys(i, j); c != 0 {
			return c
		}
		return cmp.Compare(i, j)
	})

	for _, c := range [...]*proto.ColStr{
		&b.id, &b.route, &b.tenant, &b.keyID, &b.model, &b.method, &b.path, &b.upstream,
		&b.errType, &b.reqHeaders, &b.respHeaders, &b.reqBody.ColStr,
		&b.clientIP, &b.userAgent, &b.instance, &b.truncReason,
	} {
		c.Pos = permute(c.Pos, perm, &s.pos)
	}
	if len(b.reqBody.refs) > 0 {
		b.reqBody.refs = permute(b.reqBody.refs, perm, &s.refs)
		clear(s.refs[:cap(s.refs)]) // no stale hold on buffers given back
	}
	b.created.Data = permute(b.created.Data, perm, &s.dt)
	b.status = permute(b.status, perm, &s.u16)
	b.duration = permute(b.duration, perm, &s.u32)
	b.chunkCount = permute(b.chunkCount, perm, &s.u32)
	b.bytesIn = permute(b.bytesIn, perm, &s.u64)
	b.bytesOut = permute(b.bytesOut, perm, &s.u64)
	b.truncated = permute(b.truncated, perm, &s.u8)
	for _, c := range [...]*proto.ColNullable[uint32]{b.ttfb, b.ttft} {
		c.Nulls = permute(c.Nulls, perm, &s.u8)
		v := c.Values.(*proto.ColUInt32)
		*v = permute(*v, perm, &s.u32)
	}
	for _, c := range [...]*proto.ColNullable[uint64]{b.tokensIn, b.tokensOut} {
		c.Nulls = permute(c.Nulls, perm, &s.u8)
		v := c.Values.(*proto.ColUInt64)
		*v = permute(*v, perm, &s.u64)
	}
	b.chunkData.Pos = permuteRanges(&b.chunks.Offsets, b.chunkData.Pos, perm, &s.chunkPos, &s.offs)
	*b.offsetData = permuteRanges(&b.offsets.Offsets, *b.offsetData, perm, &s.chunkAt, &s.offs)

	copy(b.first[:], b.id.Row(0))
	copy(b.last[:], b.id.Row(b.rows-1))
}

// keySorted reports whether b's rows are in (route, created_at) order.
func (b *block) keySorted() bool {
	for i := 1; i < b.rows; i++ {
		if b.compareKeys(i-1, i) > 0 {
			return false
		}
	}
	return true
}

// compareKeys orders rows i and j of b by route, then created_at.
func (b *block) compareKeys(i, j int) int {
	ri, rj := b.route.Pos[i], b.route.Pos[j]
	if c := bytes.Compare(b.route.Buf[ri.Start:ri.End], b.route.Buf[rj.Start:rj.End]); c != 0 {
		return c
	}
	return cmp.Compare(b.created.Data[i], b.created.Data[j])
}

// permute returns v's values in the order perm gives (row k of the result
// is v[perm[k]]). The result is *tmp's buffer; *tmp gets v's, for the next
// call.
func permute[S ~[]E, E any, T ~[]E](v S, perm []int, tmp *T) S {
	out := S((*tmp)[:0])
	for _, p := range perm {
		out = append(out, v[p])
	}
	*tmp = T(v[:0])
	return out
}

// permuteRanges reorders an array column whose row i is data[offsets[i-1]:
// offsets[i]] (ClickHouse's Array offsets) as perm gives, rewriting the
// offsets. As permute, the results take the scratch buffers and the
// scratch the old ones.
func permuteRanges[S ~[]E, E any, T ~[]E](offsets *proto.ColUInt64, data S, perm []int, tmp *T, tmpOffs *proto.ColUInt64) S {
	out := S((*tmp)[:0])
	offs := (*tmpOffs)[:0]
	for _, p := range perm {
		start := uint64(0)
		if p > 0 {
			start = (*offsets)[p-1]
		}
		out = append(out, data[start:(*offsets)[p]]...)
		offs = append(offs, uint64(len(out)))
	}
	*tmp, *tmpOffs = T(data[:0]), (*offsets)[:0]
	*offsets = offs
	return out
}
