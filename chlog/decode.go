package chlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/record"
)

// Row is one stored request read back from a raw Native block: a spool
// file, a WAL segment, or a SELECT ... FORMAT Native answer. Columns the
// block lacks (a file from an older release) keep their zero values.
type Row struct {
	RequestID       string    `json:"request_id"`
	CreatedAt       time.Time `json:"created_at"`
	Route           string    `json:"route"`
	Tenant          string    `json:"tenant_id"`
	KeyID           string    `json:"key_id"`
	Model           string    `json:"model"`
	Method          string    `json:"method"`
	Path            string    `json:"path"`
	Upstream        string    `json:"upstream"`
	Status          uint16    `json:"status"`
	ErrorType       string    `json:"error_type"`
	TTFBms          *uint32   `json:"ttfb_ms"`
	TTFTms          *uint32   `json:"ttft_ms"`
	DurationMS      uint32    `json:"duration_ms"`
	BytesIn         uint64    `json:"bytes_in"`
	BytesOut        uint64    `json:"bytes_out"`
	ChunkCount      uint32    `json:"chunk_count"`
	TokensIn        *uint64   `json:"tokens_in"`
	TokensOut       *uint64   `json:"tokens_out"`
	RequestHeaders  []byte    `json:"request_headers"`
	ResponseHeaders []byte    `json:"response_headers"`
	RequestBody     []byte    `json:"request_body"`
	Chunks          [][]byte  `json:"response_chunks"`
	ChunkOffsetsMS  []uint32  `json:"chunk_offsets_ms"`
	Truncated       bool      `json:"truncated"`
	TruncatedReason string    `json:"truncated_reason"`
	ClientIP        string    `json:"client_ip"`
	UserAgent       string    `json:"user_agent"`
	Instance        string    `json:"instance"`
}

// DecodeRows reads every raw Native block in data (one spool file, WAL
// payloads concatenated, or a FORMAT Native answer) into rows. A block that
// is cut short or whose column has another type than the schema's is an
// error naming what is wrong.
func DecodeRows(data []byte) ([]Row, error) {
	var rows []Row
	err := decodeBlocks(data, func(b *block) error {
		for i := range b.rows {
			rows = append(rows, b.row(i))
		}
		return nil
	})
	return rows, err
}

// decodeBlocks calls fn with each block of data, decoded into a fresh block
// whose columns are the current schema's. Blocks are checked and decoded one
// at a time, so that the good blocks before a damaged one still reach fn; the
// damaged block ends the walk with an error naming it. Native blocks carry no
// sync marker, so where a block after the damage starts cannot be told.
func decodeBlocks(data []byte, fn func(b *block) error) error {
	// Lengths in hostile bytes would otherwise size allocations: walk each
	// block against the data's size before decoding it.
	w := nativeWalker{data: data}
	for n := 0; w.pos < len(data); n++ {
		start := w.pos
		if err := w.block(); err != nil {
			return fmt.Errorf("chlog: native block %d: %w", n, err)
		}
		b, err := decodeBlock(proto.NewReader(bytes.NewReader(data[start:w.pos])))
		if err != nil {
			return fmt.Errorf("chlog: native block %d: %w", n, err)
		}
		if b == nil {
			continue // an empty block: end marker
		}
		if err := fn(b); err != nil {
			return err
		}
	}
	return nil
}

// errNoBlock: the data ended where a block would start.
var errNoBlock = errors.New("no more blocks")

// decodeBlock reads one raw Native block (no block info) into a new block.
// Columns are matched by name; one the schema does not know is skipped;
// one the block lacks is filled with its type's default.
func decodeBlock(r *proto.Reader) (*block, error) {
	cols, err := r.Int()
	if errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, errNoBlock
	}
	if err != nil {
		return nil, fmt.Errorf("columns: %w", err)
	}
	rows, err := r.Int()
	if err != nil {
		return nil, fmt.Errorf("rows: %w", err)
	}
	if cols < 0 || cols > 10000 || rows < 0 || rows > 1<<28 {
		return nil, fmt.Errorf("implausible header: %d columns, %d rows", cols, rows)
	}
	if cols == 0 && rows == 0 {
		return nil, nil
	}
	b := newBlock()
	seen := make(map[string]bool, cols)
	for i := range cols {
		name, err := r.Str()
		if err != nil {
			return nil, fmt.Errorf("column %d name: %w", i, err)
		}
		typ, err := r.Str()
		if err != nil {
			return nil, fmt.Errorf("column %s type: %w", name, err)
		}
		col := b.column(name)
		if col == nil {
			var auto proto.ColAuto
			if err := auto.Infer(proto.ColumnType(typ)); err != nil {
				return nil, fmt.Errorf("column %s: unknown type %s", name, typ)
			}
			col = auto.Data
		} else if want := col.Type().String(); want != typ && !sameDateTime(want, typ) {
			return nil, fmt.Errorf("column %s: type %s, schema has %s", name, typ, want)
		}
		if s, ok := col.(proto.StateDecoder); ok {
			if err := s.DecodeState(r); err != nil {
				return nil, fmt.Errorf("column %s state: %w", name, err)
			}
		}
		if err := col.DecodeColumn(r, rows); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("column %s: cut short (%d rows expected)", name, rows)
			}
			return nil, fmt.Errorf("column %s: %w", name, err)
		}
		seen[name] = true
	}
	for _, c := range b.input {
		if !seen[c.Name] {
			fillDefault(c.Data, rows)
		}
	}
	b.rows = rows
	if rows > 0 {
		copy(b.first[:], b.id.Row(0))
		copy(b.last[:], b.id.Row(rows-1))
	}
	return b, nil
}

// column returns the schema column named name, nil when unknown.
func (b *block) column(name string) proto.ColResult {
	for _, c := range b.input {
		if c.Name == name {
			if res, ok := c.Data.(proto.ColResult); ok {
				return res
			}
		}
	}
	return nil
}

// fillDefault appends rows default values to a column the block lacked.
func fillDefault(c proto.ColInput, rows int) {
	for range rows {
		switch c := c.(type) {
		case *proto.ColStr:
			c.Append("")
		case *bodyCol:
			c.appendEmpty()
		case *proto.ColUInt8:
			c.Append(0)
		case *proto.ColUInt16:
			c.Append(0)
		case *proto.ColUInt32:
			c.Append(0)
		case *proto.ColUInt64:
			c.Append(0)
		case *proto.ColDateTime:
			c.Append(time.Unix(0, 0))
		case *proto.ColNullable[uint32]:
			c.Append(proto.Null[uint32]())
		case *proto.ColNullable[uint64]:
			c.Append(proto.Null[uint64]())
		case *proto.ColArr[string]:
			c.Append(nil)
		case *proto.ColArr[uint32]:
			c.Append(nil)
		default:
			panic(fmt.Sprintf("chlog: BUG: no default for column type %T", c))
		}
	}
}

// row returns row i of b, its byte slices copied.
func (b *block) row(i int) Row {
	r := Row{
		RequestID:       b.id.Row(i),
		CreatedAt:       b.created.Row(i),
		Route:           b.route.Row(i),
		Tenant:          b.tenant.Row(i),
		KeyID:           b.keyID.Row(i),
		Model:           b.model.Row(i),
		Method:          b.method.Row(i),
		Path:            b.path.Row(i),
		Upstream:        b.upstream.Row(i),
		Status:          b.status.Row(i),
		ErrorType:       b.errType.Row(i),
		TTFBms:          nullable(b.ttfb.Row(i)),
		TTFTms:          nullable(b.ttft.Row(i)),
		DurationMS:      b.duration.Row(i),
		BytesIn:         b.bytesIn.Row(i),
		BytesOut:        b.bytesOut.Row(i),
		ChunkCount:      b.chunkCount.Row(i),
		TokensIn:        nullable(b.tokensIn.Row(i)),
		TokensOut:       nullable(b.tokensOut.Row(i)),
		RequestHeaders:  bytes.Clone(b.reqHeaders.RowBytes(i)),
		ResponseHeaders: bytes.Clone(b.respHeaders.RowBytes(i)),
		RequestBody:     bytes.Clone(b.reqBody.row(i)),
		ChunkOffsetsMS:  b.offsets.Row(i),
		Truncated:       b.truncated.Row(i) != 0,
		TruncatedReason: b.truncReason.Row(i),
		ClientIP:        b.clientIP.Row(i),
		UserAgent:       b.userAgent.Row(i),
		Instance:        b.instance.Row(i),
	}
	for _, c := range b.chunks.Row(i) {
		r.Chunks = append(r.Chunks, []byte(c))
	}
	return r
}

func nullable[T any](v proto.Nullable[T]) *T {
	if !v.Set {
		return nil
	}
	return &v.Value
}

// Record rebuilds the record that row was made from, so that it can be
// written into a new block (a re-send of some rows of a block). Times are
// whole milliseconds and the creation time whole seconds, as stored.
func (row *Row) Record() *record.Record {
	r := &record.Record{
		Start:           row.CreatedAt,
		Route:           row.Route,
		Tenant:          row.Tenant,
		KeyID:           row.KeyID,
		Model:           row.Model,
		Method:          row.Method,
		Path:            row.Path,
		Upstream:        row.Upstream,
		Status:          int(row.Status),
		ErrorType:       row.ErrorType,
		TTFB:            ms32(row.TTFBms),
		TTFT:            ms32(row.TTFTms),
		Duration:        time.Duration(row.DurationMS) * time.Millisecond,
		BytesIn:         int64(row.BytesIn),
		BytesOut:        int64(row.BytesOut),
		ChunkCount:      int(row.ChunkCount),
		TokensIn:        tok64(row.TokensIn),
		TokensOut:       tok64(row.TokensOut),
		RequestHeaders:  row.RequestHeaders,
		ResponseHeaders: row.ResponseHeaders,
		RequestBody:     row.RequestBody,
		Truncated:       row.Truncated,
		TruncatedReason: row.TruncatedReason,
		ClientIP:        row.ClientIP,
		UserAgent:       row.UserAgent,
		Instance:        row.Instance,
	}
	copy(r.ID[:], row.RequestID)
	// Capture decides whether body and chunk bytes are stored; a row stored
	// meta only has neither, and rebuilding it so keeps it so.
	r.Capture = len(row.RequestBody) > 0 || len(row.Chunks) > 0
	r.Chunks.AtMS = row.ChunkOffsetsMS
	for _, c := range row.Chunks {
		r.Chunks.Data = append(r.Chunks.Data, c...)
		r.Chunks.Ends = append(r.Chunks.Ends, uint32(len(r.Chunks.Data)))
	}
	return r
}

func ms32(v *uint32) time.Duration {
	if v == nil {
		return record.None
	}
	return time.Duration(*v) * time.Millisecond
}

func tok64(v *uint64) int64 {
	if v == nil {
		return -1
	}
	return int64(*v)
}

// sameDateTime reports whether a column of type have holds what one of
// type want does: DateTime('Zone') for DateTime, the same UInt32 seconds (a
// table made so passes migration: incompatible).
func sameDateTime(want, have string) bool {
	return want == "DateTime" && strings.HasPrefix(have, "DateTime(")
}
