package chlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// verifySpool checks a spool file's bytes against its name before they are
// sent: not empty, whole Native blocks (every length and count walked
// against the bytes, every column the schema knows of the schema's type), as
// many rows as the name says, and the name's first and last request ids. A
// torn write (a crash mid-write on a file system that lost the rename's
// ordering), random bytes or an empty file fail here and are rejected;
// nothing is ever sent half. Bytes after whole blocks that hold exactly the
// rows the name says, first and last id included, are not the relay's (a
// stray write appended to the file): kept is data without them, and
// trailing their length (the file's rows were all rejected for a newline).
func verifySpool(data []byte, f spoolFile) (kept []byte, trailing int, err error) {
	rows, first, last, err := countRows(data)
	if err != nil {
		if n := wholeRowsPrefix(data, f); n > 0 {
			return data[:n], len(data) - n, nil
		}
		return nil, 0, err
	}
	if rows != f.rows {
		return nil, 0, fmt.Errorf("holds %d rows; its name says %d", rows, f.rows)
	}
	if quoteID([]byte(first)) != f.first || quoteID([]byte(last)) != f.last {
		return nil, 0, fmt.Errorf("first and last request_id %s, %s; its name says %s, %s", first, last, f.first, f.last)
	}
	return data, 0, nil
}

// wholeRowsPrefix returns the length of the whole blocks at the start of
// data when they hold the rows f's name says, its first and last request
// id, and bytes that are no block follow; else 0.
func wholeRowsPrefix(data []byte, f spoolFile) int {
	r := nativeWalker{data: data, schema: true}
	for r.pos < len(r.data) {
		start := r.pos
		if err := r.block(); err != nil {
			if r.rows == f.rows && r.rows > 0 && quoteID(r.first) == f.first && quoteID(r.last) == f.last {
				return start
			}
			return 0
		}
	}
	return 0
}

// countRows walks every block of a spool file and returns its rows and its
// first and last request ids. It decodes nothing: the values are skipped
// where they lie, so checking a block of 16 MiB of bodies before its replay
// copies and allocates none of them. Bytes that are no Native blocks, or a
// column of another type than the schema's, are an error saying what is
// wrong. A block without request_id counts as ids "" (as decodeBlock fills
// it).
func countRows(data []byte) (rows int, first, last string, err error) {
	if len(data) == 0 {
		return 0, "", "", fmt.Errorf("empty file (0 bytes)")
	}
	r := nativeWalker{data: data, schema: true}
	if err := r.walk(); err != nil {
		return 0, "", "", fmt.Errorf("not a Native block: %w", err)
	}
	if r.rows == 0 {
		return 0, "", "", fmt.Errorf("no rows in %d bytes", len(data))
	}
	return r.rows, string(r.first), string(r.last), nil
}

// checkNative walks data as raw Native blocks without decoding them, so
// that every length and count in it is checked against the bytes that are
// really there before decodeBlocks allocates for them: a few random bytes
// can claim a string of a terabyte. Only column types a relay writes (and
// their plain relatives) are known; any other type is an error.
func checkNative(data []byte) error {
	r := nativeWalker{data: data}
	return r.walk()
}

// nativeWalker reads through raw Native bytes, checking bounds.
type nativeWalker struct {
	data []byte
	pos  int

	// With schema set, a column the schema knows must have its type, and
	// the walk counts rows and keeps the first and last request_id (slices
	// of data).
	schema      bool
	rows        int
	first, last []byte
}

var errCutShort = errors.New("cut short")

// walk moves past every block of data.
func (r *nativeWalker) walk() error {
	for n := 0; r.pos < len(r.data); n++ {
		if err := r.block(); err != nil {
			return fmt.Errorf("native block %d: %w", n, err)
		}
	}
	return nil
}

func (r *nativeWalker) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.data[r.pos:])
	if n <= 0 {
		return 0, errCutShort
	}
	r.pos += n
	return v, nil
}

// skip moves past n bytes (n counted in uint64 so that no product overflows).
func (r *nativeWalker) skip(n uint64) error {
	if n > uint64(len(r.data)-r.pos) {
		return errCutShort
	}
	r.pos += int(n)
	return nil
}

// str moves past a String and returns it: a slice of data, not a copy.
func (r *nativeWalker) str() ([]byte, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	start := r.pos
	if err := r.skip(n); err != nil {
		return nil, err
	}
	return r.data[start:r.pos], nil
}

func (r *nativeWalker) block() error {
	cols, err := r.uvarint()
	if err != nil {
		return fmt.Errorf("columns: %w", err)
	}
	rows, err := r.uvarint()
	if err != nil {
		return fmt.Errorf("rows: %w", err)
	}
	switch {
	case cols == 0 && rows == 0:
		return nil // an end marker
	case cols == 0 || cols > 10000 || rows > 1<<28:
		return fmt.Errorf("implausible header: %d columns, %d rows", cols, rows)
	}
	var first, last []byte // this block's request ids: "" without the column
	for i := range cols {
		name, err := r.str()
		if err != nil {
			return fmt.Errorf("column %d name: %w", i, err)
		}
		typ, err := r.str()
		if err != nil {
			return fmt.Errorf("column %s type: %w", name, err)
		}
		if r.schema {
			if want, ok := schemaType(name); ok && want != string(typ) {
				return fmt.Errorf("column %s: type %s, schema has %s", name, typ, want)
			}
			if string(name) == "request_id" && rows > 0 {
				if first, last, err = r.strEnds(rows); err != nil {
					return fmt.Errorf("column %s (%s): %w", name, typ, err)
				}
				continue
			}
		}
		if err := r.column(typ, rows); err != nil {
			return fmt.Errorf("column %s (%s): %w", name, typ, err)
		}
	}
	if rows > 0 {
		if r.rows == 0 {
			r.first = first
		}
		r.rows += int(rows)
		r.last = last
	}
	return nil
}

// strEnds moves past rows String values and returns the first and the last.
func (r *nativeWalker) strEnds(rows uint64) (first, last []byte, err error) {
	for i := range rows {
		n, err := r.uvarint()
		if err != nil {
			return nil, nil, err
		}
		start := r.pos
		if err := r.skip(n); err != nil {
			return nil, nil, err
		}
		if i == 0 {
			first = r.data[start:r.pos]
		}
		last = r.data[start:r.pos]
	}
	return first, last, nil
}

// schemaType is the type the schema gives the column named name.
func schemaType(name []byte) (string, bool) {
	for _, c := range columns {
		if c.name == string(name) {
			return c.typ, true
		}
	}
	return "", false
}

// fixedWidth are the types of one fixed size per row.
var fixedWidth = map[string]uint64{
	"UInt8": 1, "Int8": 1, "Bool": 1, "UInt16": 2, "Int16": 2, "Date": 2,
	"UInt32": 4, "Int32": 4, "Float32": 4, "DateTime": 4, "Date32": 4, "IPv4": 4,
	"UInt64": 8, "Int64": 8, "Float64": 8,
	"UInt128": 16, "Int128": 16, "UUID": 16, "IPv6": 16, "UInt256": 32, "Int256": 32,
}

// column moves past rows values of typ.
func (r *nativeWalker) column(typ []byte, rows uint64) error {
	if w, ok := fixedWidth[string(typ)]; ok {
		return r.skip(rows * w)
	}
	// inner is T of prefix(T).
	inner := func(prefix string) ([]byte, bool) {
		n := len(prefix)
		if len(typ) > n+1 && string(typ[:n]) == prefix && typ[n] == '(' && typ[len(typ)-1] == ')' {
			return typ[n+1 : len(typ)-1], true
		}
		return nil, false
	}
	hasPrefix := func(prefix string) bool { return len(typ) >= len(prefix) && string(typ[:len(prefix)]) == prefix }
	switch {
	case string(typ) == "String":
		_, _, err := r.strEnds(rows)
		return err
	case hasPrefix("DateTime("):
		return r.skip(rows * 4)
	case hasPrefix("DateTime64("):
		return r.skip(rows * 8)
	case hasPrefix("Enum8("):
		return r.skip(rows)
	case hasPrefix("Enum16("):
		return r.skip(rows * 2)
	}
	if t, ok := inner("FixedString"); ok {
		n, err := strconv.ParseUint(string(t), 10, 32)
		if err != nil {
			return fmt.Errorf("bad size")
		}
		return r.skip(rows * n)
	}
	if t, ok := inner("Nullable"); ok {
		if err := r.skip(rows); err != nil { // the null map
			return err
		}
		return r.column(t, rows)
	}
	if t, ok := inner("Array"); ok {
		var last uint64
		for range rows {
			if len(r.data)-r.pos < 8 {
				return errCutShort
			}
			off := binary.LittleEndian.Uint64(r.data[r.pos:])
			r.pos += 8
			if off < last {
				return fmt.Errorf("array offsets decrease")
			}
			last = off
		}
		if last > uint64(len(r.data)-r.pos) {
			return fmt.Errorf("%d array elements in %d bytes: %w", last, len(r.data)-r.pos, errCutShort)
		}
		return r.column(t, last)
	}
	return fmt.Errorf("a column type the relay does not write")
}
