package upstream

import (
	"bufio"
	"errors"
	"time"

	"github.com/stream-relay/stream-relay/internal/socket"
)

// errClientGoneAtEnd ends a stream whose client closed its connection before
// the stream's end went out (clientGoneAtEnd).
var errClientGoneAtEnd = errors.New("upstream: the client closed its connection before the answer's end")

// clientGoneAtEnd reports whether the client left before the stream's end:
// the last read and the terminating chunk are flushed after the record is
// finished (so that a row is kept before the client sees the end), and a
// client that left before they went out got no whole answer while its row
// said a success. A reset says it left. A FIN alone may be a half-close
// (the client closed its sending side and still reads): then what bw
// holds is flushed now, and a client that is gone answers it with a
// reset within a round trip, which is waited for (twice the connection's
// round-trip time and a millisecond, at most endWaitMax); one that still
// reads does not. A client that sent no FIN costs one system call.
func (s *Stream) clientGoneAtEnd(bw *bufio.Writer) bool {
	if s.client == nil {
		return false
	}
	sc, ok := socket.Under[*socket.Conn](s.client)
	if !ok {
		return false
	}
	st, rtt := sc.PeerState()
	switch st {
	case socket.PeerReset:
		return true
	case socket.PeerOpen:
		return false
	}
	if bw != nil {
		// Bounded as the stream's last flush is: a client that stopped
		// reading with its window full held this goroutine for good.
		if idle := s.route.IdleTimeout; idle > 0 {
			_ = s.client.SetWriteDeadline(time.Now().Add(idle))
		}
		err := bw.Flush()
		_ = s.client.SetWriteDeadline(time.Time{})
		if err != nil {
			return true
		}
	}
	wait := min(2*rtt+time.Millisecond, endWaitMax)
	for end := time.Now().Add(wait); time.Now().Before(end); {
		time.Sleep(100 * time.Microsecond)
		if st, _ := sc.PeerState(); st == socket.PeerReset {
			return true
		}
	}
	return false
}

// endWaitMax bounds clientGoneAtEnd's wait for a reset.
const endWaitMax = 50 * time.Millisecond
