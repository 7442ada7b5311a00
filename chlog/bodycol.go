package chlog

import (
	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/record"
)

// bodyCol is the request_body column: a String column whose small rows
// are copied into its own bytes, as in a ColStr, and whose large ones
// (record.TakeRequestBody) stay in the request's own body buffer, held by
// reference until the block is encoded. A 1 MiB body is then copied once
// on its way to storage, into the encoding, where a ColStr would copy it
// twice (and more while its buffer grows). The encoding is a ColStr's.
type bodyCol struct {
	proto.ColStr // every row's position; the bytes of the rows copied
	// refs has a row's taken bytes, nil for a row copied into ColStr;
	// empty while no row of the block was taken, else one per row.
	refs [][]byte
	// taken are the buffers the referenced rows lie in (whole capacity), given
	// back by release.
	taken [][]byte
	// spare is the capacity of the taken buffers beyond their rows' bytes:
	// memory the block holds that no row counts (blockMem charges it).
	spare int
}

// appendBody adds r's request body as a row, taken by reference when
// the record hands its buffer over, else copied (as appendBig). It returns
// the row's length.
func (c *bodyCol) appendBody(r *record.Record) int {
	body, buf := r.TakeRequestBody()
	if buf == nil {
		return c.appendCopy(r.RequestBody)
	}
	for len(c.refs) < len(c.Pos) {
		c.refs = append(c.refs, nil) // the rows copied before this one
	}
	c.AppendBytes(nil)
	c.refs = append(c.refs, body)
	c.taken = append(c.taken, buf)
	c.spare += cap(buf) - len(body)
	return len(body)
}

// appendEmpty adds an empty row (a record that captures no body).
func (c *bodyCol) appendEmpty() { c.appendCopy(nil) }

// appendCopy adds v as a row copied into the column's own bytes and
// returns its length.
func (c *bodyCol) appendCopy(v []byte) int {
	n := appendBig(&c.ColStr, v)
	if len(c.refs) > 0 {
		c.refs = append(c.refs, nil)
	}
	return n
}

// row returns the bytes of row i.
func (c *bodyCol) row(i int) []byte {
	if len(c.refs) > 0 && c.refs[i] != nil {
		return c.refs[i]
	}
	return c.RowBytes(i)
}

// EncodeColumn encodes the rows as a ColStr would.
func (c *bodyCol) EncodeColumn(b *proto.Buffer) {
	if len(c.refs) == 0 {
		c.ColStr.EncodeColumn(b)
		return
	}
	for i := range c.Pos {
		putStr(b, c.row(i))
	}
}

// WriteColumn writes the rows as a ColStr would.
func (c *bodyCol) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// Reset empties the column and gives the taken buffers back.
func (c *bodyCol) Reset() {
	c.ColStr.Reset()
	c.release()
}

// release gives the taken buffers back (record.GiveBodyBuffer) and
// forgets the referenced rows; the copied rows stay.
func (c *bodyCol) release() {
	for i, buf := range c.taken {
		record.GiveBodyBuffer(buf)
		c.taken[i] = nil
	}
	clear(c.refs)
	c.taken, c.refs, c.spare = c.taken[:0], c.refs[:0], 0
}
