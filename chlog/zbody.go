package chlog

import (
	"errors"
	"io"
	"sync"

	"github.com/ClickHouse/ch-go/compress"
)

// zbody is an insert's request body: the encoded Native bytes compressed
// into ClickHouse's LZ4 frames as the transport reads them, one frame
// (compressChunk raw bytes) at a time, or as they are when lz4 is nil
// (Options.Compression). The server decompresses and parses
// one frame while the next is compressed, on the other core, instead of
// waiting for the whole body to be compressed first; and no buffer of the
// whole compressed body is needed. When the bytes run out, more (if set)
// may give the next piece: the writer encodes the blocks that came
// meanwhile (send.go, gather), each into its own buffer, so a burst goes
// as one insert, streamed, as clickhouse-client sends one, and no piece is
// copied to join the others.
//
// The transport may still read a body after Do returned (net/http closes
// it in its own goroutine on some errors), while the writer reuses the
// encoded bytes and the compressor for the next insert: end makes every
// later Read fail, and waits for a Read in progress.
type zbody struct {
	mu   sync.Mutex
	src  []byte // the piece being sent, raw; src[off:] not yet compressed
	off  int
	more func() []byte    // the next piece, or nil: the end
	lz4  *compress.Writer // nil: the bytes go as they are
	pend []byte           // bytes not yet read: lz4.Data's tail, or src's
	done bool
}

var errBodyEnded = errors.New("chlog: insert body read after the insert ended")

func (z *zbody) Read(p []byte) (int, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if err := z.fill(); err != nil {
		return 0, err
	}
	n := copy(p, z.pend)
	z.pend = z.pend[n:]
	return n, nil
}

// WriteTo writes the body to w a piece at a time (at most compressChunk
// raw bytes, or one compressed frame), each straight from the encoded
// block or the compressor: the transport (io.Copy) calls it instead of
// Read, and writes each piece with one system call instead of copying it
// into its buffer 32 KiB at a time. A piece is written under the lock, so
// that end waits for a write in progress, as it waits for a Read.
func (z *zbody) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		n, err := z.writePiece(w)
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// writePiece writes the next piece to w; io.EOF when there is none.
func (z *zbody) writePiece(w io.Writer) (int, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if err := z.fill(); err != nil {
		return 0, err
	}
	n, err := w.Write(z.pend)
	z.pend = z.pend[n:]
	return n, err
}

// fill makes pend the next bytes of the body when it is empty: the rest of
// the current piece, raw or compressed, or the next piece (more); io.EOF
// when there are none. z.mu is held.
func (z *zbody) fill() error {
	if z.done {
		return errBodyEnded
	}
	for len(z.pend) == 0 {
		if z.off == len(z.src) {
			if z.more == nil {
				return io.EOF
			}
			if s := z.more(); len(s) > 0 {
				z.src, z.off = s, 0
			} else {
				z.more = nil
				return io.EOF
			}
		}
		n := min(len(z.src)-z.off, compressChunk)
		if z.lz4 == nil {
			z.pend = z.src[z.off : z.off+n]
		} else {
			if err := z.lz4.Compress(z.src[z.off : z.off+n]); err != nil {
				return err
			}
			z.pend = z.lz4.Data
		}
		z.off += n
	}
	return nil
}

// Close is the transport's; the body stays readable until end.
func (z *zbody) Close() error { return nil }

// end stops the body: src, the compressor and its buffer are the
// writer's again once it returns.
func (z *zbody) end() {
	z.mu.Lock()
	z.done, z.src, z.pend, z.more = true, nil, nil, nil
	z.mu.Unlock()
}
