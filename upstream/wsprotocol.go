package upstream

import (
	"errors"
	"net"
	"strings"

	"github.com/fasthttp/websocket"
	"github.com/stream-relay/stream-relay/record"
)

// A side of a WebSocket session that breaks the protocol (a close frame
// with a code that is never sent on the wire, such as 1006 or 1005; an
// unmasked client frame or a masked upstream one; a reserved opcode or
// RSV bit; a control frame over 125 bytes or fragmented; a continuation
// out of place) is neither a side that closed nor one that vanished: the
// websocket library has sent it a 1002 close frame naming what it broke
// ("bad close code 1006", "bad MASK", "bad opcode 3") when the read
// returns. The session ends from the relay: the row's close is that 1002
// and its reason, error_type names the side (client_protocol_error,
// upstream_protocol_error), and the other side gets the relay's own close
// frame, the reason naming the side and what it broke:
//   - the upstream, whose client the relay is, 1002 "client protocol
//     error: bad MASK" (1011 is a server's code);
//   - the client 1011 "upstream protocol error: bad opcode 3": the
//     client did nothing wrong, and 1011 is what it gets when the upstream
//     vanishes too.

// libErrPrefix begins the text of every error the websocket library
// makes; a protocol error's text is the prefix and the reason it sent.
const libErrPrefix = "websocket: "

// protocolErrorReason reports whether err, which ended a read of a side's
// connection, is the websocket library's answer to a frame that broke the
// protocol, and returns the reason of the 1002 close frame the library
// sent that side. The library (fasthttp/websocket, Conn.handleProtocolError)
// gives such an error no type of its own: it is a plain error whose text
// is libErrPrefix and the reason. Its other read errors are told apart
// first: a close frame (*websocket.CloseError, 1006 for an unexpected
// EOF), a network error, the library's sentinels and its internal errors.
// TestWSProtocolErrors (app) pins the texts over real sockets.
func protocolErrorReason(err error) (string, bool) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case err == nil, errors.As(err, &ce), errors.As(err, &ne),
		errors.Is(err, websocket.ErrReadLimit), errors.Is(err, websocket.ErrCloseSent), errors.Is(err, websocket.ErrNilConn),
		errors.Is(err, errMessageTooBig):
		return "", false
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, libErrPrefix) || strings.HasPrefix(msg, libErrPrefix+"internal error") {
		return "", false
	}
	return msg[len(libErrPrefix):], true
}

// brokeProtocol ends the session for the side of direction dir, whose
// frame broke the protocol and which the library has sent 1002 with
// reason: the row says so (see above), and the other side gets the
// relay's close frame. Both sides count as having had their close frame:
// the offending side's answer, if it could still be read, is not passed
// on.
func (t *Tunnel) brokeProtocol(dir byte, reason string) {
	side, errType, code := "client", record.ErrClientProtocolError, websocket.CloseProtocolError
	if dir == record.DirUpstream {
		side, errType, code = "upstream", record.ErrUpstreamProtocolError, websocket.CloseInternalServerErr
	}
	reason, first := t.claimEnd("relay", websocket.CloseProtocolError, reason, errType, true, true)
	if !first {
		return
	}
	toOther := truncateReason(side + " protocol error: " + reason)
	t.sendEnd(code, toOther, dir == record.DirUpstream, dir == record.DirClient)
}
