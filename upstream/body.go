package upstream

import (
	"bytes"
	"errors"
	"io"
)

// bodyMode is how an upstream response body is delimited (RFC 9112 6.3).
type bodyMode uint8

const (
	bodyNone    bodyMode = iota // HEAD, 1xx, 204, 304, Content-Length: 0
	bodyFixed                   // Content-Length
	bodyChunked                 // Transfer-Encoding: chunked
	bodyClose                   // until the server closes the connection
)

// Errors of a malformed upstream body; they end the stream as upstream_reset.
var (
	errChunkSize    = errors.New("upstream: malformed chunk size")
	errChunkCRLF    = errors.New("upstream: chunk not followed by CRLF")
	errTrailerLarge = errors.New("upstream: trailer section too large")
)

const (
	maxChunkSizeLine = 1024     // hex digits plus any chunk extensions
	maxTrailerBytes  = 16 << 10 // trailer fields after the last chunk
)

// bodyReader decodes an upstream response body in place in its read
// buffer, chunked framing included. next hands out everything already
// received as one view, across chunk boundaries, and blocks only when
// nothing is buffered: one upstream socket read becomes one client write
// and one flush, however many SSE events it carried, and a lone event is
// never held back.
type bodyReader struct {
	rb    *readBuf
	mode  bodyMode
	left  int64 // fixed: bytes left; chunked: bytes left in the current chunk (-1: trailer next)
	crlf  bool  // chunked: the CRLF after a chunk's data is still to be read
	size  int64 // chunked: the size of the current (or last) chunk
	done  bool
	total int64
}

func (b *bodyReader) reset(rb *readBuf, mode bodyMode, length int64) {
	*b = bodyReader{rb: rb, mode: mode, left: length}
	if mode == bodyNone || mode == bodyFixed && length == 0 {
		b.done = true
	}
}

// view is a run of decoded body bytes, rb.buf[start:end]. The headroom
// before start is always free to overwrite; tailFree says the two bytes
// after end are too.
type view struct {
	start, end int
	tailFree   bool
}

// next returns the body bytes that have arrived, waiting only while none
// has; io.EOF once the body is complete. With an error it may still return
// bytes, which came before the error. A view stays valid until the next
// call.
func (b *bodyReader) next() (view, error) {
	for {
		if b.done {
			return view{}, io.EOF
		}
		if b.rb.buffered() > 0 {
			v, err := b.decode()
			if v.end > v.start || err != nil {
				return v, err
			}
			if b.done {
				return view{}, io.EOF
			}
		}
		if err := b.rb.fill(); err != nil {
			switch {
			case errors.Is(err, errBufferFull):
				if b.left < 0 {
					err = errTrailerLarge
				} else {
					err = errChunkSize
				}
			case err == io.EOF && b.mode == bodyClose:
				b.done = true
				return view{}, io.EOF
			case err == io.EOF:
				err = io.ErrUnexpectedEOF
			}
			return view{}, err
		}
	}
}

// dataRun returns how many bytes of body data come next on the wire with
// no framing among them: the rest of a fixed-length body, or of the
// current chunk. 0 when framing (or the end, or an unknown length) is
// next. Bytes already buffered are not counted: they are decoded first.
func (b *bodyReader) dataRun() int64 {
	switch {
	case b.done:
		return 0
	case b.mode == bodyFixed:
		return b.left
	case b.mode == bodyChunked && b.left > 0 && !b.crlf:
		return b.left
	}
	return 0
}

// skip accounts n bytes of the current run (dataRun) as consumed: decoded
// from the read buffer, or moved without passing through it (splice.go).
func (b *bodyReader) skip(n int64) {
	b.left -= n
	b.total += n
	switch b.mode {
	case bodyFixed:
		b.done = b.left == 0
	case bodyChunked:
		b.crlf = b.left == 0
	}
}

// decode consumes what is buffered and returns the body bytes among it.
func (b *bodyReader) decode() (view, error) {
	rb := b.rb
	start := rb.r
	switch b.mode {
	case bodyFixed:
		k := int(min(b.left, int64(rb.buffered())))
		rb.r += k
		b.skip(int64(k))
		return view{start, rb.r, rb.r == rb.w}, nil
	case bodyClose:
		rb.r = rb.w
		b.total += int64(rb.w - start)
		return view{start, rb.w, true}, nil
	}
	buf, pos, out, w := rb.buf, rb.r, rb.r, rb.w
	var err error
	for pos < w && err == nil {
		if b.crlf {
			if buf[pos] == '\n' {
				pos++
			} else if buf[pos] != '\r' || pos+1 < w && buf[pos+1] != '\n' {
				err = errChunkCRLF
				break
			} else if pos+1 == w {
				break
			} else {
				pos += 2
			}
			b.crlf = false
			continue
		}
		if b.left == 0 {
			i := bytes.IndexByte(buf[pos:w], '\n')
			if i < 0 {
				if w-pos > maxChunkSizeLine {
					err = errChunkSize
				}
				break
			}
			var size int64
			if size, err = parseChunkSize(buf[pos : pos+i+1]); err != nil {
				break
			}
			pos += i + 1
			b.left, b.size = size, size
			if size == 0 {
				b.left = -1
			}
			continue
		}
		if b.left < 0 {
			end, ok := trailerEnd(buf[pos:w])
			if !ok {
				if w-pos > maxTrailerBytes {
					err = errTrailerLarge
				}
				break
			}
			pos += end
			b.done = true
			break
		}
		k := int(min(b.left, int64(w-pos)))
		if out != pos {
			copy(buf[out:], buf[pos:pos+k])
		}
		out += k
		pos += k
		b.skip(int64(k))
	}
	rb.r = pos
	return view{start, out, pos >= out+tailroom || pos == w && out == w}, err
}

// trailerEnd returns the length of the trailer section (fields and the
// empty line that ends it) at the start of p, if p holds all of it.
func trailerEnd(p []byte) (int, bool) {
	pos := 0
	for {
		i := bytes.IndexByte(p[pos:], '\n')
		if i < 0 {
			return 0, false
		}
		line := p[pos : pos+i+1]
		pos += i + 1
		if len(line) == 1 || len(line) == 2 && line[0] == '\r' {
			return pos, true
		}
	}
}

// parseChunkSize parses a chunk-size line, "<hex>[;ext]\r\n".
func parseChunkSize(line []byte) (int64, error) {
	if len(line) > maxChunkSizeLine {
		return 0, errChunkSize
	}
	// Trimmed by hand: bytes.TrimRight builds its cutset's table at every
	// call, a cost the profile showed at every chunk.
	for len(line) > 0 && (line[len(line)-1] == '\n' || line[len(line)-1] == '\r') {
		line = line[:len(line)-1]
	}
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	for len(line) > 0 && (line[len(line)-1] == ' ' || line[len(line)-1] == '\t') {
		line = line[:len(line)-1]
	}
	if len(line) == 0 {
		return 0, errChunkSize
	}
	// Leading zeros are allowed (RFC 9112 7.1); fifteen significant hex
	// digits at most, so that the size cannot overflow.
	for len(line) > 1 && line[0] == '0' {
		line = line[1:]
	}
	if len(line) > 15 {
		return 0, errChunkSize
	}
	var n int64
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, errChunkSize
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}
