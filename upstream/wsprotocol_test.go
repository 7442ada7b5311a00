package upstream

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"github.com/fasthttp/websocket"
)

// TestProtocolErrorReason: only the library's protocol errors are taken
// for a side that broke the protocol; a close frame, an unexpected EOF, a
// network error, the read limit, the relay's own limit and the library's
// internal errors are not.
func TestProtocolErrorReason(t *testing.T) {
	for _, tt := range []struct {
		err    error
		reason string
	}{
		{errors.New("websocket: bad close code 1006"), "bad close code 1006"},
		{errors.New("websocket: RSV2 set, bad opcode 3, bad MASK"), "RSV2 set, bad opcode 3, bad MASK"},
		{&websocket.CloseError{Code: 1006, Text: "unexpected EOF"}, ""},
		{&websocket.CloseError{Code: 1000}, ""},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, ""},
		{io.EOF, ""},
		{websocket.ErrReadLimit, ""},
		{websocket.ErrCloseSent, ""},
		{fmt.Errorf("read: %w", errMessageTooBig), ""},
		{errors.New("websocket: internal error, unexpected text or binary in Reader"), ""},
		{errors.New("tls: bad record MAC"), ""},
	} {
		got, ok := protocolErrorReason(tt.err)
		if ok != (tt.reason != "") || got != tt.reason {
			t.Errorf("%v: %q %v, want %q", tt.err, got, ok, tt.reason)
		}
	}
}
