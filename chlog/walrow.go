package chlog

import (
	"encoding/binary"
	"errors"
	"hash/crc32"

	"github.com/ClickHouse/ch-go/proto"
)

// A WAL record's payload is its row as a one-row raw Native block. The row
// has just joined the current block, so it is encoded from there: the
// block's last row, straight into the WAL buffer, one copy of each
// captured byte (rather than into a one-row block, then an encode buffer,
// then the WAL buffer).

// lastRow is a view of the last row of one of a block's columns, as a
// one-row column.
type lastRow struct {
	col proto.ColInput
	typ proto.ColumnType // col's, kept: composite types are built anew per call
	bad bool             // col has a type encodeLast does not know
}

func (c *lastRow) Type() proto.ColumnType { return c.typ }

func (c *lastRow) Rows() int { return 1 }

func (c *lastRow) EncodeColumn(b *proto.Buffer) {
	if !encodeLast(c.col, b) {
		c.bad = true
	}
}

func (c *lastRow) WriteColumn(w *proto.Writer) { w.ChainBuffer(c.EncodeColumn) }

// errLastRow: a column type the last-row encoder does not know (a BUG: a
// test encodes every column of the schema).
var errLastRow = errors.New("chlog: wal: no last-row encoding for a column type")

// lastRows encodes the last row of b's columns as a one-row raw Native
// block; its views are reused from call to call.
type lastRows struct {
	views []*lastRow
	input proto.Input
}

// encode appends the last row of b to buf.
func (l *lastRows) encode(b *block, buf *proto.Buffer) error {
	if len(l.views) != len(b.input) {
		l.views, l.input = make([]*lastRow, len(b.input)), make(proto.Input, len(b.input))
		for i := range l.views {
			l.views[i] = &lastRow{}
			l.input[i] = proto.InputColumn{Data: l.views[i]}
		}
	}
	for i, in := range b.input {
		v := l.views[i]
		v.col, v.bad = in.Data, false
		if l.input[i].Name != in.Name {
			v.typ = in.Data.Type()
			l.input[i].Name = in.Name
		}
	}
	err := proto.Block{Columns: len(l.input), Rows: 1}.EncodeRawBlock(buf, protocolVersion, l.input)
	for _, v := range l.views {
		if v.bad {
			err = errLastRow
		}
		v.col = nil
	}
	return err
}

// encodeLast appends the Native encoding of col's last row to b; false for
// a column type it does not know.
func encodeLast(col proto.ColInput, b *proto.Buffer) bool {
	switch c := col.(type) {
	case *proto.ColStr:
		p := c.Pos[len(c.Pos)-1]
		putStr(b, c.Buf[p.Start:p.End])
	case *bodyCol:
		putStr(b, c.row(len(c.Pos)-1))
	case *proto.ColDateTime:
		b.PutUInt32(uint32(c.Data[len(c.Data)-1]))
	case *proto.ColUInt8:
		b.PutUInt8((*c)[len(*c)-1])
	case *proto.ColUInt16:
		b.PutUInt16((*c)[len(*c)-1])
	case *proto.ColUInt32:
		b.PutUInt32((*c)[len(*c)-1])
	case *proto.ColUInt64:
		b.PutUInt64((*c)[len(*c)-1])
	case *proto.ColNullable[uint32]:
		b.PutUInt8(c.Nulls[len(c.Nulls)-1])
		return encodeLast(c.Values, b)
	case *proto.ColNullable[uint64]:
		b.PutUInt8(c.Nulls[len(c.Nulls)-1])
		return encodeLast(c.Values, b)
	case *proto.ColArr[string]:
		from, to := lastArray(c.Offsets)
		b.PutUInt64(to - from)
		s, ok := c.Data.(*proto.ColStr)
		if !ok {
			return false
		}
		if to > from {
			// The strings of one row lie back to back in s.Buf.
			for _, p := range s.Pos[from:to] {
				putStr(b, s.Buf[p.Start:p.End])
			}
		}
	case *proto.ColArr[uint32]:
		from, to := lastArray(c.Offsets)
		b.PutUInt64(to - from)
		v, ok := c.Data.(*proto.ColUInt32)
		if !ok {
			return false
		}
		for _, x := range (*v)[from:to] {
			b.PutUInt32(x)
		}
	default:
		return false
	}
	return true
}

// lastArray returns the element range of an array column's last row.
func lastArray(off proto.ColUInt64) (from, to uint64) {
	to = off[len(off)-1]
	if len(off) > 1 {
		from = off[len(off)-2]
	}
	return from, to
}

// putStr appends a String value: its length as a uvarint, then its bytes.
func putStr(b *proto.Buffer, v []byte) {
	b.PutUVarInt(uint64(len(v)))
	b.Buf = append(b.Buf, v...)
}

// appendWALRecord appends to dst a WAL record for the last row of blk
// (request id id): header, then the row encoded in place, then the header
// filled in. On error dst is returned unchanged.
func (l *lastRows) appendWALRecord(dst []byte, blk *block, id []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, make([]byte, walHeader)...)
	buf := proto.Buffer{Buf: dst}
	if err := l.encode(blk, &buf); err != nil {
		return dst[:start], err
	}
	dst = buf.Buf
	payload := dst[start+walHeader:]
	binary.LittleEndian.PutUint32(dst[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.ChecksumIEEE(payload))
	copy(dst[start+8:start+walHeader], id)
	return dst, nil
}
