package upstream

import (
	"bufio"
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

// bodyReader reads an upstream response body straight from the
// connection's buffered reader, decoding chunked framing itself. Unlike
// fasthttp's body stream it returns in one Read every byte already received,
// across chunk boundaries, and blocks only when nothing is buffered: one
// upstream socket read becomes one client write and one flush, however many
// SSE events it carried, and a lone event is never held back.
type bodyReader struct {
	br    *bufio.Reader
	mode  bodyMode
	left  int64 // fixed: bytes left; chunked: bytes left in the current chunk
	crlf  bool  // chunked: the CRLF after a chunk's data is still to be read
	done  bool
	total int64
}

func (b *bodyReader) reset(br *bufio.Reader, mode bodyMode, length int64) {
	*b = bodyReader{br: br, mode: mode, left: length}
	if mode == bodyNone || mode == bodyFixed && length == 0 {
		b.done = true
	}
}

// Read fills p with what has arrived, blocking only while nothing has.
func (b *bodyReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && !b.done {
		if n > 0 && b.br.Buffered() == 0 {
			break // never wait once there is something to hand on
		}
		var (
			k   int
			err error
		)
		switch b.mode {
		case bodyFixed:
			k, err = b.br.Read(p[n:min(int64(len(p)), int64(n)+b.left)])
			b.left -= int64(k)
			if b.left == 0 {
				b.done = true
			}
			if err == io.EOF && !b.done {
				err = io.ErrUnexpectedEOF
			}
		case bodyClose:
			k, err = b.br.Read(p[n:])
			if err == io.EOF {
				b.done = true
				err = nil
			}
		case bodyChunked:
			k, err = b.readChunked(p[n:], n > 0)
			if err == errWouldBlock {
				err = nil
				n += k
				b.total += int64(k)
				return n, nil
			}
		}
		n += k
		b.total += int64(k)
		if err != nil {
			return n, err
		}
	}
	if n == 0 && b.done {
		return 0, io.EOF
	}
	return n, nil
}

var errWouldBlock = errors.New("would block")

// readChunked reads chunk data into p. With noWait set it returns
// errWouldBlock rather than wait for framing bytes that have not arrived.
func (b *bodyReader) readChunked(p []byte, noWait bool) (int, error) {
	if b.crlf {
		if noWait && b.br.Buffered() < 2 {
			return 0, errWouldBlock
		}
		if err := readCRLF(b.br); err != nil {
			return 0, err
		}
		b.crlf = false
	}
	if b.left == 0 {
		if noWait && !lineBuffered(b.br) {
			return 0, errWouldBlock
		}
		size, err := readChunkSize(b.br)
		if err != nil {
			return 0, err
		}
		if size == 0 {
			if noWait && !trailerBuffered(b.br) {
				// Put nothing back: remember that the size line was read.
				b.left = -1
				return 0, errWouldBlock
			}
			if err := skipTrailer(b.br); err != nil {
				return 0, err
			}
			b.done = true
			return 0, nil
		}
		b.left = size
	}
	if b.left < 0 { // last chunk seen, trailer pending
		if noWait && !trailerBuffered(b.br) {
			return 0, errWouldBlock
		}
		if err := skipTrailer(b.br); err != nil {
			return 0, err
		}
		b.done = true
		return 0, nil
	}
	want := min(int64(len(p)), b.left)
	if noWait {
		want = min(want, int64(b.br.Buffered()))
	}
	k, err := b.br.Read(p[:want])
	b.left -= int64(k)
	if b.left == 0 {
		b.crlf = true
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return k, err
}

// lineBuffered reports whether a whole line is already buffered.
func lineBuffered(br *bufio.Reader) bool {
	buf, _ := br.Peek(br.Buffered())
	return bytes.IndexByte(buf, '\n') >= 0
}

// trailerBuffered reports whether the trailer section (ending in an empty
// line) is already buffered.
func trailerBuffered(br *bufio.Reader) bool {
	buf, _ := br.Peek(br.Buffered())
	return bytes.HasPrefix(buf, []byte("\r\n")) || bytes.HasPrefix(buf, []byte("\n")) ||
		bytes.Contains(buf, []byte("\n\r\n")) || bytes.Contains(buf, []byte("\n\n"))
}

// readChunkSize reads "<hex>[;ext]\r\n".
func readChunkSize(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull || len(line) > maxChunkSizeLine {
			return 0, errChunkSize
		}
		if err == io.EOF {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, err
	}
	if len(line) > maxChunkSizeLine {
		return 0, errChunkSize
	}
	line = bytes.TrimRight(line, "\r\n")
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t")
	if len(line) == 0 || len(line) > 15 {
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

func readCRLF(br *bufio.Reader) error {
	c, err := br.ReadByte()
	if err == nil && c == '\r' {
		c, err = br.ReadByte()
	}
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if c != '\n' {
		return errChunkCRLF
	}
	return nil
}

// skipTrailer reads trailer fields up to and including the empty line.
func skipTrailer(br *bufio.Reader) error {
	total := 0
	for {
		line, err := br.ReadSlice('\n')
		total += len(line)
		if total > maxTrailerBytes {
			return errTrailerLarge
		}
		if err != nil {
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return nil
		}
	}
}
