package upstream

import (
	"bytes"
	"errors"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/usage"
)

// A Tunnel relays one WebSocket session between the client and the
// upstream, message by message, both ways at once: text and binary
// messages, pings and pongs, and the close frame with its code and reason,
// each passed on as it was read. Every message is recorded (see
// record.AddMessage). The session ends
//   - when one side sends a close frame: it is passed on, and the other
//     side's answering close frame passed back;
//   - when one side vanishes (connection closed or broken without a close
//     frame, or it takes no byte for the idle timeout): the other side gets
//     a close frame, 1001 (client gone) or 1011 (upstream gone);
//   - when a message exceeds MaxBodyBytes: both sides get 1009, the
//     reason naming the sender (error_type body_too_large);
//   - when no message went either way for the route's IdleTimeout: both
//     sides get 1001 "idle timeout" (upstream_timeout);
//   - on Close (the relay shutting down): both get 1001 (shutting_down);
//   - when one side breaks the protocol: it gets the library's 1002, the
//     other side the relay's close (see brokeProtocol).
//
// Each side gets one close frame: once the relay has sent a side its own,
// a close frame from the other side (most often the echo of the relay's)
// is recorded but not passed on, so that side sees the relay's code and
// reason, whichever connection answers first.
//
// Once one side's end is seen, both connections are closed as soon as the
// close handshake completes, and at most CloseWait later.
type Tunnel struct {
	route  *Route
	rec    *record.Record
	client *websocket.Conn
	up     *websocket.Conn

	mu          sync.Mutex    // guards rec and the fields below while the pumps run
	clockFrom   time.Duration // the TTFT clock's start (sessionclock.go); record.None before the client spoke
	ending      bool
	finished    bool // Run has completed rec: nothing may touch it
	closeCode   int
	closeReason string
	closedBy    string
	closeSent   [2]bool // a close frame was sent, or is being sent, to the client [0] or the upstream [1]
	tokensIn    int64   // summed over the session's response.done events
	tokensOut   int64
	haveTokens  bool

	closeWait time.Duration // CloseWait when the session began
	cutTimer  *time.Timer   // cuts both connections closeWait after the end (claimEnd)

	last    atomic.Int64 // offset from rec.Start of the last frame, either way
	clocked atomic.Bool  // the session's TTFT is known: messages are no longer looked into
	writing atomic.Int32 // messages being written now (pump), either way
	ended   chan struct{}
	endOnce sync.Once
	cutOnce sync.Once
}

// CloseWait bounds the wait for the close handshake once a session ends:
// past it both connections are closed whatever was answered. It bounds
// each close frame's write too: a side that takes no bytes holds the
// write of its close frame until then, never the other side's. A session
// keeps the value it began with.
var CloseWait = time.Second

// NewTunnel prepares the session of rec between client (the relay's side of
// the client's connection) and up (from DialWS).
func NewTunnel(route *Route, rec *record.Record, client, up *websocket.Conn) *Tunnel {
	return &Tunnel{route: route, rec: rec, client: client, up: up, clockFrom: record.None, ended: make(chan struct{}), closeWait: CloseWait}
}

// Run relays messages until the session ends and both connections are
// closed, then completes rec: the close (code, reason, who closed) as
// members of its response headers JSON, and its duration. The caller
// finishes rec.
func (t *Tunnel) Run() {
	for _, c := range [...]*websocket.Conn{t.client, t.up} {
		// No library read limit: past it the library answers 1009 itself,
		// with no reason; readMessage enforces MaxBodyBytes and end sends
		// the relay's own 1009 to both sides.
		c.SetReadLimit(0)
		c.SetCloseHandler(func(int, string) error { return nil }) // answered by the other side, passed back
	}
	t.client.SetPingHandler(t.control(record.DirClient, record.MsgPing, t.up, websocket.PingMessage))
	t.client.SetPongHandler(t.control(record.DirClient, record.MsgPong, t.up, websocket.PongMessage))
	t.up.SetPingHandler(t.control(record.DirUpstream, record.MsgPing, t.client, websocket.PingMessage))
	t.up.SetPongHandler(t.control(record.DirUpstream, record.MsgPong, t.client, websocket.PongMessage))
	t.touch()
	stopIdle := t.watchIdle()

	done := make(chan struct{}, 2)
	go func() { t.pump(t.up, t.client, record.DirUpstream); done <- struct{}{} }()
	go func() { t.pump(t.client, t.up, record.DirClient); done <- struct{}{} }()
	// A pump ends only once the session's end is claimed (claimEnd), which
	// starts the timer that cuts both connections CloseWait later: the
	// other pump ends when the close handshake completes, or then.
	<-done
	<-done
	stopIdle()
	t.cut()

	t.mu.Lock()
	defer t.mu.Unlock()
	t.finished = true
	if t.cutTimer != nil {
		t.cutTimer.Stop()
	}
	t.rec.Duration = time.Since(t.rec.Start)
	if t.haveTokens {
		t.rec.TokensIn, t.rec.TokensOut = t.tokensIn, t.tokensOut
	}
	t.rec.ResponseHeaders = t.appendClose(t.rec.ResponseHeaders)
}

// Close ends the session from the relay: both sides get 1001 with reason,
// and the record errType. It returns at once: the close frames are written
// on a goroutine of their own, as a side that takes no bytes holds a write
// for up to CloseWait, and a shutdown closes every session (handlers'
// closeAll) one after the other. Run returns once the close handshake is
// over.
func (t *Tunnel) Close(reason, errType string) {
	if reason, first := t.claimEnd("relay", websocket.CloseGoingAway, reason, errType, true, true); first {
		go t.sendEnd(websocket.CloseGoingAway, reason, true, true)
	}
}

// Done is closed once the session has begun to end.
func (t *Tunnel) Done() <-chan struct{} { return t.ended }

// pump relays src's messages to dst until src ends or dst cannot take them.
func (t *Tunnel) pump(src, dst *websocket.Conn, dir byte) {
	var buf []byte
	limit := t.route.MaxBodyBytes
	progress := t.touch // bound once
	for {
		typ, r, err := src.NextReader()
		if err == nil {
			buf, err = readMessage(r, buf[:0], limit, progress)
		}
		if err != nil {
			t.readEnded(src, dst, dir, err)
			return
		}
		if t.closeSentTo(dst) {
			// The relay has sent dst its close (an idle timeout, the
			// drain): the message cannot be passed on (the write is
			// refused), and it is not recorded as relayed.
			t.gone(other(dir))
			return
		}
		t.note(dir, msgType(typ), buf)
		_ = dst.SetWriteDeadline(t.messageDeadline(len(buf)))
		t.writing.Add(1)
		err = dst.WriteMessage(typ, buf)
		t.writing.Add(-1)
		if err != nil {
			t.gone(other(dir))
			return
		}
		t.touch() // a message that took long to write was traffic all along
		if cap(buf) > 64<<10 {
			buf = nil // a large message's buffer is not kept for the small ones after it
		}
	}
}

// errMessageTooBig: a message is longer than the route's MaxBodyBytes.
var errMessageTooBig = errors.New("upstream: websocket message exceeds max_body_bytes")

// readMessage appends the rest of the message r to buf, reading at most
// limit+1 bytes of it: past limit it returns errMessageTooBig, and the
// rest of the message is never read (nor buffered). progress, when not
// nil, is called after each read that brought bytes: a large message
// arriving slowly is traffic, not an idle session (watchIdle).
func readMessage(r io.Reader, buf []byte, limit int64, progress func()) ([]byte, error) {
	for {
		end := cap(buf)
		if int64(end) > limit {
			end = int(limit + 1)
		}
		if len(buf) == end {
			buf = slices.Grow(buf, max(4<<10, cap(buf)))
			continue
		}
		n, err := r.Read(buf[len(buf):end])
		buf = buf[:len(buf)+n]
		if n > 0 && progress != nil {
			progress()
		}
		if int64(len(buf)) > limit {
			return buf, errMessageTooBig
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// readEnded handles the end of reading src (direction dir).
func (t *Tunnel) readEnded(src, dst *websocket.Conn, dir byte, err error) {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure:
		// A close frame: passed on with its code and reason. The first one
		// ends the session; the other side's answer completes the
		// handshake.
		// Recorded before it is passed on: the answer may come back at once.
		// Not passed on when dst has had a close frame already: the relay
		// ended the session and this is src's answer to the relay's own.
		t.noteClose(dir, ce.Code, ce.Text)
		t.end(sideName(dir), ce.Code, ce.Text, "", false, false)
		if t.claimClose(dst) {
			_ = dst.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(ce.Code, ce.Text), time.Now().Add(t.closeWait))
		}
	case errors.Is(err, errMessageTooBig), errors.Is(err, websocket.ErrReadLimit):
		// The relay's 1009 to both sides, src included: the reason tells
		// the sender what it did. (ErrReadLimit: the library's count of a
		// message overflowed int64, and it has sent src its 1009 first.)
		by := "client"
		if dir == record.DirUpstream {
			by = "upstream"
		}
		reason := by + " message exceeds " + strconv.FormatInt(t.route.MaxBodyBytes, 10) + " bytes"
		t.end("relay", websocket.CloseMessageTooBig, reason, record.ErrBodyTooLarge, true, true)
	default:
		if reason, ok := protocolErrorReason(err); ok {
			// The library has sent src its 1002 (wsprotocol.go).
			t.brokeProtocol(dir, reason)
			return
		}
		t.gone(dir)
	}
}

// gone ends the session for a side that vanished (direction dir is its
// sending direction): the other side is told.
func (t *Tunnel) gone(dir byte) {
	if dir == record.DirClient {
		t.end("client", websocket.CloseGoingAway, "client went away", record.ErrClientClosed, false, true)
	} else {
		t.end("upstream", websocket.CloseInternalServerErr, "upstream connection lost", record.ErrUpstreamReset, true, false)
	}
}

// end records the first end of the session and sends the relay's own
// close frames: to the client when toClient, to the upstream when toUp.
func (t *Tunnel) end(by string, code int, reason, errType string, toClient, toUp bool) {
	if reason, first := t.claimEnd(by, code, reason, errType, toClient, toUp); first {
		t.sendEnd(code, reason, toClient, toUp)
	}
}

// claimEnd records the end of the session if it is the first, and returns
// the reason as the sides get it (truncateReason) and whether it was; the
// caller then sends the relay's close frames (sendEnd). The first claim
// starts the timer that cuts both connections CloseWait later, before any
// close frame is written: a write held by a side that takes no bytes does
// not put the cut off.
func (t *Tunnel) claimEnd(by string, code int, reason, errType string, toClient, toUp bool) (string, bool) {
	reason = truncateReason(reason) // the row keeps what the sides got
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ending || t.finished {
		return reason, false
	}
	t.ending = true
	t.cutTimer = time.AfterFunc(t.closeWait, t.cut)
	t.closedBy, t.closeCode, t.closeReason = by, code, reason
	if errType != "" && t.rec.ErrorType == "" {
		t.rec.ErrorType = errType
	}
	// Claimed before either frame is written: a side's answer to the
	// first must not be passed to the other ahead of the relay's own
	// (readEnded).
	t.closeSent[0], t.closeSent[1] = toClient, toUp
	return reason, true
}

// sendEnd sends the relay's close frames of the end claimEnd recorded: to
// the client when toClient, to the upstream when toUp. Both at once: a
// side that takes no bytes holds the write of its own frame (until the cut
// at most, claimEnd), not the other's. It returns once both writes have
// returned; the client's, when there are two, runs on a goroutine of its
// own, which has ended by then.
func (t *Tunnel) sendEnd(code int, reason string, toClient, toUp bool) {
	t.endOnce.Do(func() { close(t.ended) })
	msg := websocket.FormatCloseMessage(code, reason)
	deadline := time.Now().Add(t.closeWait)
	var toClientDone chan struct{}
	switch {
	case toClient && toUp:
		toClientDone = make(chan struct{})
		go func() {
			_ = t.client.WriteControl(websocket.CloseMessage, msg, deadline)
			close(toClientDone)
		}()
	case toClient:
		_ = t.client.WriteControl(websocket.CloseMessage, msg, deadline)
	}
	if toUp {
		_ = t.up.WriteControl(websocket.CloseMessage, msg, deadline)
	}
	if toClientDone != nil {
		<-toClientDone
	}
}

// claimClose reports whether dst (the client's or the upstream's
// connection) has had no close frame yet, and marks it as having one: the
// caller sends it.
func (t *Tunnel) claimClose(dst *websocket.Conn) bool {
	i := t.closeIndex(dst)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closeSent[i] {
		return false
	}
	t.closeSent[i] = true
	return true
}

// cut closes both connections. The client's is the server's hijacked
// connection, whose Close does nothing until the hijack handler returns
// (fasthttp closes it then): an expired deadline ends its pending reads
// and writes now, and its socket is closed beneath when it can be reached.
func (t *Tunnel) cut() {
	t.cutOnce.Do(func() {
		for _, c := range [...]net.Conn{t.client.NetConn(), t.up.NetConn()} {
			_ = c.SetDeadline(time.Unix(1, 0))
			if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
				c = u.UnsafeConn()
			}
			_ = c.Close()
		}
	})
}

// control returns the ping or pong handler of one side: the frame is
// recorded and passed on to dst.
func (t *Tunnel) control(dir, typ byte, dst *websocket.Conn, wsType int) func(string) error {
	return func(data string) error {
		t.note(dir, typ, []byte(data))
		_ = dst.WriteControl(wsType, []byte(data), t.writeDeadline())
		return nil
	}
}

// note records one frame of direction dir. Its time is taken under the
// lock, so that the two directions' frames are recorded in the order of
// their times (a frame timed before the other side's first message and
// recorded after it made a negative TTFT).
func (t *Tunnel) note(dir, typ byte, payload []byte) {
	data := typ == record.MsgText || typ == record.MsgBinary
	var restarts, output bool
	if data && !t.clocked.Load() {
		restarts = restartsClock(dir, payload)
		output = dir == record.DirUpstream && isOutput(payload)
	}
	var tk usage.Tokens
	if dir == record.DirUpstream && typ == record.MsgText && bytes.Contains(payload, responseDone) {
		tk.Scan(usage.Responses, payload)
	}
	t.mu.Lock()
	at := time.Since(t.rec.Start)
	t.last.Store(int64(at))
	t.rec.AddMessage(dir, typ, payload, at)
	if in, out, ok := tk.Counts(); ok {
		t.tokensIn, t.tokensOut, t.haveTokens = t.tokensIn+in, t.tokensOut+out, true
	}
	if data && t.rec.TTFT == record.None {
		// The session's clock (sessionclock.go).
		switch {
		case dir == record.DirClient && t.clockFrom == record.None, restarts && t.clockFrom != record.None:
			t.clockFrom = at
		case dir == record.DirUpstream && t.clockFrom != record.None && output:
			t.rec.TTFT = at - t.clockFrom
			t.clocked.Store(true)
		}
	}
	t.mu.Unlock()
}

// noteClose records a close frame: its chunk holds the code as text, its
// bytes count the frame's payload (two bytes of code and the reason).
func (t *Tunnel) noteClose(dir byte, code int, reason string) {
	payload := appendCloseText(nil, code, reason)
	t.note(dir, record.MsgClose, payload)
	wire := len(websocket.FormatCloseMessage(code, reason))
	t.mu.Lock()
	if dir == record.DirClient {
		t.rec.BytesIn += int64(wire - len(payload))
	} else {
		t.rec.BytesOut += int64(wire - len(payload))
	}
	t.mu.Unlock()
}

// responseDone marks the OpenAI Realtime event that ends a response and
// carries its usage ("input_tokens", "output_tokens", as the Responses
// API): a session's tokens are their sum over its responses.
var responseDone = []byte(`"response.done"`)

func (t *Tunnel) touch() { t.last.Store(int64(time.Since(t.rec.Start))) }

func (t *Tunnel) writeDeadline() time.Time { return time.Now().Add(t.route.IdleTimeout) }

// writeRate is the slowest reading a message's write allows beside the
// idle timeout: a side that takes a large message at this rate or faster
// is reading, not idle (one deadline of idle_timeout for the whole write
// cut a client reading 10 MB at 1.3 MB/s after 2 s, as if it had left).
// It also bounds how long a side that reads nothing holds a session with a
// large message: at 64 KiB/s a 30 MiB one held it 8 minutes.
const writeRate = 1 << 20 // bytes a second

// messageDeadline bounds the write of a message of n bytes: the idle
// timeout, and a second more for every writeRate bytes.
func (t *Tunnel) messageDeadline(n int) time.Time {
	return time.Now().Add(t.route.IdleTimeout + time.Duration(n/writeRate)*time.Second)
}

// watchIdle ends the session when no frame went either way for the
// route's idle timeout. The returned stop ends the watch: once it
// returned, no check runs or reads the record (a timer's Stop alone does
// not wait for a check already running, which could also re-arm it).
func (t *Tunnel) watchIdle() (stop func()) {
	idle := t.route.IdleTimeout
	if idle <= 0 {
		return func() {}
	}
	var tm *time.Timer
	var mu sync.Mutex
	stopped := false
	check := func() {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		silent := time.Since(t.rec.Start) - time.Duration(t.last.Load())
		if t.writing.Load() > 0 {
			silent = 0 // a message being written: its own deadline bounds it
		}
		if silent < idle {
			tm.Reset(idle - silent)
			mu.Unlock()
			return
		}
		mu.Unlock()
		t.end("relay", websocket.CloseGoingAway, "idle timeout", record.ErrUpstreamTimeout, true, true)
	}
	mu.Lock()
	tm = time.AfterFunc(idle, check)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		tm.Stop()
		mu.Unlock()
	}
}

// appendClose adds the session's end to the response headers JSON object
// h: ":ws-close-code", ":ws-close-reason" and ":ws-closed-by" (client,
// upstream or relay). The ':' keeps the names apart from header names.
func (t *Tunnel) appendClose(h []byte) []byte {
	if len(h) == 0 || h[len(h)-1] != '}' {
		h = append(h[:0], '{', '}')
	}
	h = h[:len(h)-1]
	code := t.closeCode
	by := t.closedBy
	if by == "" {
		by, code = "relay", websocket.CloseAbnormalClosure
	}
	h = appendHeaderJSON(h, []byte(record.HeaderWSCloseCode), strconv.AppendInt(nil, int64(code), 10), 0)
	h = appendHeaderJSON(h, []byte(record.HeaderWSCloseReason), []byte(t.closeReason), 0)
	h = appendHeaderJSON(h, []byte(record.HeaderWSClosedBy), []byte(by), 0)
	return append(h, '}')
}

// appendCloseText is a close frame's recorded payload: the code in
// decimal, a space and the reason.
func appendCloseText(b []byte, code int, reason string) []byte {
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	return append(b, reason...)
}

// truncateReason keeps a close reason within a control frame's 123 bytes.
func truncateReason(s string) string {
	if len(s) > 123 {
		return s[:123]
	}
	return s
}

func msgType(t int) byte {
	if t == websocket.BinaryMessage {
		return record.MsgBinary
	}
	return record.MsgText
}

// closeSentTo reports whether a close frame was sent, or is being sent, to
// dst.
func (t *Tunnel) closeSentTo(dst *websocket.Conn) bool {
	i := t.closeIndex(dst)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closeSent[i]
}

// closeIndex is dst's place in closeSent: 0 the client's, 1 the upstream's.
func (t *Tunnel) closeIndex(dst *websocket.Conn) int {
	if dst == t.up {
		return 1
	}
	return 0
}

func other(dir byte) byte {
	if dir == record.DirClient {
		return record.DirUpstream
	}
	return record.DirClient
}

func sideName(dir byte) string {
	if dir == record.DirClient {
		return "client"
	}
	return "upstream"
}
