package upstream

import (
	"bufio"
	"io"
	"strconv"
	"sync"
)

// WriteHijacked writes the response head and then the stream, chunked, to
// the client's connection the caller took from the server (fasthttp's
// Hijack), as fasthttp's own writer would, and ends the stream. The head
// goes into the writer's buffer first, with the first chunk after it, and
// back to heads at once. The stream is finished (its record handed on)
// before the last chunk is flushed. ok is true when the whole response
// went out: the connection may serve its next request.
func (s *Stream) WriteHijacked(head *[]byte, heads *sync.Pool) (ok bool) {
	bw := shelvedWriter(s.client)
	_, err := bw.Write(*head)
	heads.Put(head)
	if err == nil {
		cw := chunkFramer{w: bw}
		_, err = s.copyTo(&cw, bw)
		if err == nil {
			_, err = bw.WriteString("0\r\n\r\n")
		}
	}
	s.CloseWithError(err)
	if err == nil {
		err = bw.Flush()
	}
	shelveWriter(bw)
	return err == nil
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
