package upstream

import (
	"bufio"
	"bytes"

	"github.com/valyala/fasthttp"
)

// An answer head with both Transfer-Encoding: chunked and a Content-Length
// is framed by the chunks (fasthttp drops the length, RFC 9112 6.3), but
// the two disagree on where the answer ends, the mark of a response split
// or smuggled by something between: RFC 9112 6.1 has the client close the
// connection after such an answer, and so does the relay, instead of
// reading the next answer from where its framing says this one ended.

// closeIfFramedTwice marks h, just read from a head that has a
// Content-Length line (hasLengthLine), to close its connection when the
// answer is chunked all the same.
func closeIfFramedTwice(h *fasthttp.ResponseHeader) {
	if h.ContentLength() == -1 {
		h.SetConnectionClose()
	}
}

// peekHead returns the bytes br holds (awaitHeadEnd found the head's end
// among them), not consumed.
func peekHead(br *bufio.Reader) []byte {
	b, _ := br.Peek(br.Buffered())
	return b
}

// hasLengthLine reports whether the head at the start of b (past the
// line ends fasthttp skips before a status line), up to its blank line,
// has a Content-Length field (any case).
func hasLengthLine(b []byte) bool {
	const name = "content-length:"
	b = bytes.TrimLeft(b, "\r\n")
	for {
		j := bytes.IndexByte(b, '\n')
		if j < 0 {
			return false
		}
		b = b[j+1:]
		if len(b) == 0 || b[0] == '\r' || b[0] == '\n' {
			return false // the blank line: the head ended
		}
		if len(b) > len(name) && b[0]|0x20 == 'c' && bytes.EqualFold(b[:len(name)], []byte(name)) {
			return true
		}
	}
}
