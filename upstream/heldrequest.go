package upstream

import (
	"bufio"
	"sync"

	"github.com/valyala/fasthttp"
)

// A request held for its answer. After a request is written, the first
// try to read its answer nearly always finds nothing, and Go's poller
// cannot wait without that try (internal/socket, exchange.go). A request
// with a small body, on a plain TCP connection, is therefore serialized
// into a buffer of its own and written by the first read of the response
// head (conn.Read), inside the poller callback that then waits for the
// answer: one system call fewer a request. A larger body is written as
// before, through the connection's writer, without the extra copy.
//
// Only on a reused keep-alive connection: the wait keeps the readiness of
// bytes that arrive after it began, not of bytes already in the socket,
// and a server may answer a new connection before it has read the request
// (a test upstream did); the wait would then last until the first-byte
// timeout. A reused connection has nothing in its socket (its last
// response was read to the end, with nothing after it); a server that
// sends bytes on it unasked closes it too (a 408), and the request written
// into the closed connection brings a reset, which ends the wait.

// maxHeldRequestBody is the largest request body held so: its copy costs
// little, and a request this small fits an idle connection's socket
// buffer in one write (when it does not, the rest is written as usual).
const maxHeldRequestBody = 16 << 10

// heldRequest is a request's bytes, serialized by fasthttp through w.
type heldRequest struct {
	b []byte
	w *bufio.Writer
}

func (h *heldRequest) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	return len(p), nil
}

var heldRequests = sync.Pool{New: func() any {
	h := &heldRequest{}
	h.w = bufio.NewWriterSize(h, 4<<10)
	return h
}}

// holdRequest serializes req into a pooled heldRequest; release gives it
// back once its bytes went out.
func holdRequest(req *fasthttp.Request) (*heldRequest, error) {
	h := heldRequests.Get().(*heldRequest)
	h.b = h.b[:0]
	err := req.Write(h.w)
	if err == nil {
		err = h.w.Flush()
	}
	return h, err
}

// maxPooledHeld bounds the buffer a released heldRequest keeps.
const maxPooledHeld = 64 << 10

func (h *heldRequest) release() {
	h.w.Reset(h)
	if cap(h.b) > maxPooledHeld {
		h.b = nil
	}
	heldRequests.Put(h)
}
