package upstream

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/stream-relay/stream-relay/internal/socket"
)

// Read buffer layout: bytes [r:w] of buf are received and not yet consumed.
// The first headroom bytes are never filled, and neither are the last
// tailroom: a view handed to the client writer always has room before it
// for a chunk-size line and after it for the closing CRLF, so one client
// write frames and sends it without a copy.
const (
	readBufBytes = 32 << 10 // default size (Options.ReadBufferBytes)
	headroom     = 16       // "%x\r\n" of any size that fits the buffer
	tailroom     = 2        // "\r\n"
)

// errBufferFull is a fill with no room left: an unread line (a chunk size,
// a trailer) does not fit the buffer.
var errBufferFull = errors.New("upstream: read buffer full")

// readBuf buffers an upstream response body. Its buffer comes from a pool
// and goes back whenever everything received was consumed, and on a plain
// TCP connection it is not even held while waiting for the next bytes: the
// read happens inside the poller's callback, which gives the buffer back
// when the socket has nothing. A stream idling between two events holds no
// read buffer at all.
type readBuf struct {
	buf   []byte
	box   *bufBox  // the pooled holder of buf, nil when buf is not pooled
	pool  *bufPool // where buffers come from and go back; nil: defaultBufPool
	r, w  int
	size  int // tests: a buffer of this size instead of a pooled one
	count *int64

	src io.Reader       // where bytes come from when raw is nil (TLS, tests)
	raw syscall.RawConn // plain TCP: read in the poller's callback
	// rawRead is r.rawCallback bound once, so that passing it to raw.Read
	// allocates nothing.
	rawRead func(fd uintptr) bool
	rawN    int
	rawErr  error
	pending error // an error that came with bytes, returned by the next fill
	// max, when > 0, is the most one fill reads: a body of large chunks
	// is read up to the framing after each, leaving the next chunk's data
	// in the socket to be spliced (Stream.readLimit).
	max int
	// noWait: when nothing has arrived, fill returns errWouldBlock instead
	// of waiting (idlewait.go).
	noWait bool
	// inCB: fill runs inside raw's poller callback, on descriptor fd, and
	// returns errNeedWait instead of waiting; drained: the last read there
	// took less than it asked for, so the socket is empty (pollcopy.go).
	inCB    bool
	drained bool
	fd      uintptr
}

// bufBox keeps a pooled buffer behind a pointer, so that returning it to
// the pool allocates nothing.
type bufBox struct{ b []byte }

// bufPool pools read buffers of one size. A route's size is its
// Options.ReadBufferBytes: raw byte streams (audio) read in larger pieces
// than SSE, fewer system calls a MiB, and a buffer is held only while
// received bytes wait in it.
type bufPool struct{ p sync.Pool }

var bufPools = struct {
	mu sync.Mutex
	m  map[int]*bufPool
}{m: map[int]*bufPool{}}

// bufPoolOf returns the pool of n-byte read buffers (n <= 0: readBufBytes),
// one per size for the process.
func bufPoolOf(n int) *bufPool {
	if n <= 0 {
		n = readBufBytes
	}
	bufPools.mu.Lock()
	defer bufPools.mu.Unlock()
	p := bufPools.m[n]
	if p == nil {
		p = &bufPool{}
		p.p.New = func() any { return &bufBox{b: make([]byte, n)} }
		bufPools.m[n] = p
	}
	return p
}

var defaultBufPool = bufPoolOf(readBufBytes)

// reset points r at a new source; raw, when set, is src's socket, read
// directly, and count adds up the bytes read from it (src counts its own).
func (r *readBuf) reset(src io.Reader, raw syscall.RawConn, count *int64) {
	r.release()
	if raw == nil {
		count = nil
	}
	r.src, r.raw, r.count, r.pending, r.max, r.noWait = src, raw, count, nil, 0, false
	r.inCB, r.drained, r.fd = false, false, 0
	if raw != nil && r.rawRead == nil {
		r.rawRead = r.rawCallback
	}
}

// buffered returns the number of received bytes not yet consumed.
func (r *readBuf) buffered() int { return r.w - r.r }

func (r *readBuf) acquire() {
	if r.size > 0 {
		r.buf = make([]byte, r.size)
	} else {
		r.box = r.bufPool().p.Get().(*bufBox)
		r.buf = r.box.b
	}
	r.r, r.w = headroom, headroom
}

// release gives the buffer back; whatever it held is dropped.
func (r *readBuf) release() {
	if r.box != nil {
		r.bufPool().p.Put(r.box)
	}
	r.buf, r.box, r.r, r.w = nil, nil, 0, 0
}

// bufPool is where r's buffers come from. r.pool changes only while r holds
// none (Route.exchangeOnce sets it after reset).
func (r *readBuf) bufPool() *bufPool {
	if r.pool == nil {
		return defaultBufPool
	}
	return r.pool
}

// preload puts bytes already received (after a response head) in front.
// They came through the head's reader (headReaderSize), which can hold
// more than a route's read buffer (read_buffer_bytes down to 4 KiB): then
// the stream reads on from a buffer of its own, large enough, not pooled,
// until it is next released.
func (r *readBuf) preload(p []byte) {
	if len(p) == 0 {
		return
	}
	if r.buf == nil {
		r.acquire()
	}
	if len(p) > len(r.buf)-tailroom-r.w {
		nb := make([]byte, r.w+len(p)+len(r.buf))
		copy(nb[r.r:], r.buf[r.r:r.w])
		if r.box != nil {
			r.bufPool().p.Put(r.box)
		}
		r.buf, r.box = nb, nil
	}
	r.w += copy(r.buf[r.w:len(r.buf)-tailroom], p)
}

// fill reads more bytes after those buffered, blocking until some arrive.
// It makes room by moving unconsumed bytes to the front; errBufferFull
// when there is none.
func (r *readBuf) fill() error {
	if r.pending != nil {
		err := r.pending
		r.pending = nil
		return err
	}
	if r.buf != nil {
		switch {
		case r.r == r.w:
			if r.raw != nil {
				r.release() // the callback takes one when bytes are there
			} else {
				r.r, r.w = headroom, headroom
			}
		case r.r > headroom:
			r.w = headroom + copy(r.buf[headroom:], r.buf[r.r:r.w])
			r.r = headroom
		}
		if r.buf != nil && r.w >= len(r.buf)-tailroom {
			return errBufferFull
		}
	}
	var n int
	var err error
	if r.raw != nil {
		r.rawN, r.rawErr = 0, nil
		switch {
		case !r.inCB:
			err = r.raw.Read(r.rawRead)
		case r.drained && !r.noWait:
			return errNeedWait
		case !r.rawCallback(r.fd):
			return errNeedWait
		}
		if err == nil {
			n, err = r.rawN, r.rawErr
			if n == 0 && err == nil {
				err = io.EOF
			}
		}
	} else {
		if r.buf == nil {
			r.acquire()
		}
		n, err = r.src.Read(r.buf[r.w:r.readEnd()])
	}
	if n > 0 {
		r.w += n
		if r.count != nil {
			*r.count += int64(n)
		}
		r.pending = err
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// readEnd is where the next read into buf stops.
func (r *readBuf) readEnd() int {
	end := len(r.buf) - tailroom
	if r.max > 0 && r.w+r.max < end {
		end = r.w + r.max
	}
	return end
}

// rawCallback runs inside the poller with the socket's descriptor: it
// reads what has arrived into a buffer taken from the pool, and when
// nothing has, gives the buffer back (if it holds nothing unread) and asks
// to be called again once the socket is readable.
func (r *readBuf) rawCallback(fd uintptr) bool {
	if r.buf == nil {
		r.acquire()
	}
	for {
		n, errno := socket.Read(fd, r.buf[r.w:r.readEnd()])
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			emptyReads.Add(1)
			if r.r == r.w {
				r.release()
			}
			if r.noWait {
				r.rawN, r.rawErr = 0, errWouldBlock
				return true
			}
			return false
		}
		r.rawN, r.rawErr = n, nil
		r.drained = n < r.readEnd()-r.w
		if errno != 0 {
			r.rawErr = &rawReadError{errno: errno}
		}
		return true
	}
}

// emptyReads counts upstream body reads that found nothing (EAGAIN), for
// EmptyReads.
var emptyReads atomic.Int64

// EmptyReads returns how many upstream body reads found the socket empty
// since the process started (relay_upstream_empty_reads_total): each is a
// system call spent before a wait. Read in the poller's callback, an SSE
// stream spends about one per stream (pollcopy.go).
func EmptyReads() int64 { return emptyReads.Load() }

// rawReadError is a read system call's failure on the upstream socket.
type rawReadError struct{ errno error }

func (e *rawReadError) Error() string { return "upstream: read: " + e.errno.Error() }
func (e *rawReadError) Unwrap() error { return e.errno }
