package upstream

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/stream-relay/stream-relay/internal/socket"
)

// WriteHijacked writes the response head and then the stream, chunked, to
// the client's connection the caller took from the server (fasthttp's
// Hijack), as fasthttp's own writer would, and ends the stream. The head
// goes into the writer's buffer first, with the first chunk after it, and
// back to heads at once. The stream is finished (its record handed on)
// before the last chunk is flushed. ok is true when the whole response
// went out: the connection may serve its next request.
//
// With wake set and idleGap > 0, a stream whose last two events came
// idleGap or more apart and whose upstream is quiet (idlewait.go) returns
// waiting (and not ok) with its writer's buffer put
// away: wake(s) is called once the upstream has more (or the stream was
// aborted), and the owner then calls WriteHijacked again (head is not used
// again) to go on. From the return with waiting until wake, the stream is
// not the caller's.
func (s *Stream) WriteHijacked(head *[]byte, heads *sync.Pool, wake func(*Stream), idleGap time.Duration) (ok, waiting bool) {
	var err error
	bw := s.hw
	if bw == nil {
		bw = shelvedWriter(s.client)
		s.hw = bw
		_, err = bw.Write(*head)
		heads.Put(head)
	}
	if err == nil {
		if idleGap > 0 {
			s.wake, s.idleGap = wake, idleGap
		}
		cw := chunkFramer{w: bw}
		_, err = s.copyPolled(&cw, bw)
		if err == errWouldBlock {
			if s.idleWait() {
				return false, true
			}
			s.wake = nil // no idle set: wait in place from now on
			_, err = s.copyPolled(&cw, bw)
		}
		if err == nil {
			_, err = bw.WriteString("0\r\n\r\n")
		} else {
			s.answerCut(bw) // cutanswer.go
		}
	}
	// Ended (CloseWithError), the stream is no longer the watchdog's: the
	// last flush gets a write deadline of its own, so that a client that
	// stops reading just then (a zero window) cannot hold the connection
	// and this goroutine for ever.
	c, idle := s.client, s.route.IdleTimeout
	s.CloseWithError(err)
	if err == nil {
		if idle > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(idle))
		}
		err = bw.Flush()
		if idle > 0 && err == nil {
			_ = c.SetWriteDeadline(time.Time{})
		}
	}
	shelveWriter(bw)
	return err == nil, false
}

// chunkFramer frames each write as one chunk and flushes it, as fasthttp's
// chunked body writer does.
type chunkFramer struct{ w *bufio.Writer }

func (cw *chunkFramer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var b [20]byte
	if _, err := cw.w.Write(append(strconv.AppendInt(b[:0], int64(len(p)), 16), '\r', '\n')); err != nil {
		return 0, err
	}
	if _, err := cw.w.Write(p); err != nil {
		return 0, err
	}
	if _, err := cw.w.WriteString("\r\n"); err != nil {
		return 0, err
	}
	return len(p), cw.w.Flush()
}

// hijackedWriterSize is the buffer of a hijacked stream's writer: the
// server's write buffer (app: 8 KiB), so that shelved buffers serve both.
const hijackedWriterSize = 8 << 10

// shelvedWriter returns a writer to c with a buffer from the shelf, or a
// new one.
func shelvedWriter(c io.Writer) *bufio.Writer {
	bw := fromShelf(hijackedWriterSize)
	if bw == nil {
		return bufio.NewWriterSize(c, hijackedWriterSize)
	}
	bw.Reset(c)
	return bw
}

// shelveWriter puts bw's buffer back on the shelf.
func shelveWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	toShelf(bw)
}

// WriteClosing writes the response head and then the stream as it comes,
// unframed, to the client's connection the caller took from the server
// (fasthttp's Hijack), and ends the stream: the answer to an HTTP/1.0
// client, which reads no chunked framing and takes the end of a body of
// unknown length from the connection's close (RFC 9112 6.3), which the
// caller does next. The head goes out with the first bytes of the body;
// each write is flushed.
func (s *Stream) WriteClosing(head []byte) error {
	s.rctx = nil // taken from the server: its request context is let go of
	bw := shelvedWriter(s.client)
	_, err := bw.Write(head)
	if err == nil {
		_, err = s.copyPolled(flushingWriter{bw}, nil)
		if err != nil && !s.answerCut(bw) { // cutanswer.go
			// Cut inside the body: a close that looks like its end
			// would hand the client a body cut short as whole.
			resetOnClose(s.client)
		}
	}
	s.CloseWithError(err)
	if err == nil {
		err = bw.Flush()
	}
	shelveWriter(bw)
	return err
}

// flushingWriter flushes its buffer after each write.
type flushingWriter struct{ w *bufio.Writer }

func (f flushingWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

// resetOnClose has the close of c (a client connection, maybe wrapped)
// send a reset instead of the ordinary end of the stream (SO_LINGER 0):
// an HTTP/1.0 client reads a body without a length to the connection's
// end, and can tell a body cut short only by the reset.
func resetOnClose(c net.Conn) {
	if tc, ok := socket.Under[interface{ SetLinger(sec int) error }](c); ok {
		_ = tc.SetLinger(0)
	}
}

// Length returns the length of the upstream's body as its Content-Length
// declared it, or -1 when it declared none (chunked, or ended by the close).
func (s *Stream) Length() int64 {
	if s.body.mode != bodyFixed {
		return -1
	}
	return int64(s.hdr.ContentLength())
}
