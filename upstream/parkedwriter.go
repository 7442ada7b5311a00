package upstream

import (
	"bufio"
	"sync"
)

// A stream's client writer (fasthttp's bufio.Writer under the chunked body
// writer, 8 KiB in the app) carries the response head and first chunk, and
// the last chunk with the terminating one. Every chunk in between goes
// straight to the client's connection (see copyTo), so between the first
// chunk and the last the writer's buffer is parked: it waits on a shelf
// shared by all streams and the writer holds none. A stream idling between two events
// then holds no write buffer, as it holds no read buffer (readBuf).
//
// Parking swaps the writer's whole struct with an empty one (bufio's
// buffer is unexported), and restoring swaps a shelved writer's struct
// back in, pointed at the client's connection, which is what fasthttp's
// writer wrote to (its RequestCtx's connection, s.client).

// writerShelf keeps the buffers of parked writers for streams that need one
// back. It holds at most shelfMax: with more streams idling at once the rest
// are left to the garbage collector, and a stream that finds the shelf empty
// allocates a new buffer.
var writerShelf struct {
	mu   sync.Mutex
	free []*bufio.Writer
}

// shelfMax bounds the shelf: enough for the streams that start and end
// around each other under load, small beside what thousands of idle
// streams would hold.
const shelfMax = 128

// parkWriter takes bw's buffer away until restoreWriter. bw must be empty
// (its last write flushed) and must not be used until then.
func (s *Stream) parkWriter(bw *bufio.Writer) {
	if s.parked != nil || bw.Buffered() != 0 {
		return
	}
	holder := s.holder
	if holder == nil {
		holder = new(bufio.Writer)
	}
	s.holder = nil
	*holder = *bw
	holder.Reset(nil) // keeps the buffer, drops the connection
	*bw = bufio.Writer{}
	s.parked, s.parkedSize = bw, holder.Size()
	toShelf(holder)
}

// fromShelf takes a shelved writer whose buffer has size bytes, nil when
// the shelf has none (one of another size on the way is dropped: another
// server's).
func fromShelf(size int) *bufio.Writer {
	writerShelf.mu.Lock()
	defer writerShelf.mu.Unlock()
	for n := len(writerShelf.free); n > 0; n-- {
		bw := writerShelf.free[n-1]
		writerShelf.free[n-1] = nil
		writerShelf.free = writerShelf.free[:n-1]
		if bw.Size() == size {
			return bw
		}
	}
	return nil
}

// toShelf puts bw, writing to nothing, on the shelf unless it is full.
func toShelf(bw *bufio.Writer) {
	writerShelf.mu.Lock()
	if len(writerShelf.free) < shelfMax {
		writerShelf.free = append(writerShelf.free, bw)
	}
	writerShelf.mu.Unlock()
}

// restoreWriter gives the parked writer a buffer again (one from the shelf,
// else a new one of the size it had), writing to the client's connection.
// It does nothing when no writer is parked.
func (s *Stream) restoreWriter() {
	bw := s.parked
	if bw == nil {
		return
	}
	holder := fromShelf(s.parkedSize)
	if holder == nil {
		holder = bufio.NewWriterSize(nil, s.parkedSize)
	}
	*bw = *holder
	bw.Reset(s.client)
	*holder = bufio.Writer{}
	s.holder, s.parked = holder, nil
}
