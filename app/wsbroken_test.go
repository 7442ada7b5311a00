package app

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// badFrameUpstream is a WebSocket upstream on 127.0.0.1 that greets with
// session.created and, on the client's text message "badclose" or
// "badop", writes a frame that breaks the protocol (a close frame with
// code 1006, which is never sent on the wire; a frame of the reserved
// opcode 3). It reports every close frame it gets on closes.
type badFrameUpstream struct {
	base   string
	closes chan websocket.CloseError
}

func startBadFrameUpstream(t *testing.T) *badFrameUpstream {
	t.Helper()
	u := &badFrameUpstream{closes: make(chan websocket.CloseError, 16)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"session.created"}`))
		var wmu sync.Mutex // the raw writes and the library's close answer
		c.SetCloseHandler(func(code int, text string) error {
			u.closes <- websocket.CloseError{Code: code, Text: text}
			wmu.Lock()
			defer wmu.Unlock()
			return c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
		})
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		for {
			_, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			var raw []byte
			switch string(msg) {
			case "badclose": // FIN close, unmasked (server), code 1006
				raw = []byte{0x88, 0x02, 0x03, 0xee}
			case "badop": // FIN, opcode 3 (reserved), empty
				raw = []byte{0x83, 0x00}
			default:
				continue
			}
			wmu.Lock()
			_, _ = c.NetConn().Write(raw)
			wmu.Unlock()
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	u.base = "http://" + ln.Addr().String()
	return u
}

// nextClose is the next close frame the upstream got, failing the test
// when none comes within 10 s.
func (u *badFrameUpstream) nextClose(t *testing.T) websocket.CloseError {
	t.Helper()
	select {
	case ce := <-u.closes:
		return ce
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream got no close frame")
		return websocket.CloseError{}
	}
}

// clientCloseOnly reads c until its session ends and returns the close
// frame it got (nil when the connection ended without one).
func clientCloseOnly(t *testing.T, c *websocket.Conn) *websocket.CloseError {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range 100 {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure {
			return ce
		}
		t.Logf("client's read ended with %v", err)
		return nil
	}
	t.Fatal("too many messages before the close")
	return nil
}

// TestWSProtocolErrors: a side that breaks the protocol is not recorded as
// one that vanished. The offending side gets the library's 1002 with what
// it broke; the other side the relay's close (the upstream 1002 "client
// protocol error: ...", the client 1011 "upstream protocol error: ..."),
// over a real relay and real sockets; the rows, read back from the real
// ClickHouse, say client_protocol_error / upstream_protocol_error, 1002
// with the library's reason, closed by the relay.
func TestWSProtocolErrors(t *testing.T) {
	chURL := servicetest.ClickHouse(t)
	db := testDatabase(t, chURL)
	up := startBadFrameUpstream(t)
	r := startWSRelay(t, &wsUpstream{base: up.base}, "", withClickHouse(chURL, db))

	type want struct {
		clientCode int
		clientText string
		upCode     int
		upText     string
		errType    string
		reason     string
	}
	cases := []struct {
		name string
		raw  []byte // written on the client's connection
		msg  string // or sent as a text message, for the upstream to misbehave
		want want
	}{
		{name: "client close 1006", raw: []byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xee}, // masked with a zero key
			want: want{1002, "bad close code 1006", 1002, "client protocol error: bad close code 1006", "client_protocol_error", "bad close code 1006"}},
		{name: "client unmasked frame", raw: []byte{0x81, 0x02, 'h', 'i'},
			want: want{1002, "bad MASK", 1002, "client protocol error: bad MASK", "client_protocol_error", "bad MASK"}},
		{name: "upstream close 1006", msg: "badclose",
			want: want{1011, "upstream protocol error: bad close code 1006", 1002, "bad close code 1006", "upstream_protocol_error", "bad close code 1006"}},
		{name: "upstream reserved opcode", msg: "badop",
			want: want{1011, "upstream protocol error: bad opcode 3", 1002, "bad opcode 3", "upstream_protocol_error", "bad opcode 3"}},
	}
	ids := map[string]want{}
	for _, tc := range cases {
		c, resp := openSession(t, r)
		if tc.raw != nil {
			if _, err := c.NetConn().Write(tc.raw); err != nil {
				t.Fatal(err)
			}
		} else if err := c.WriteMessage(websocket.TextMessage, []byte(tc.msg)); err != nil {
			t.Fatal(err)
		}
		got := clientCloseOnly(t, c)
		upGot := up.nextClose(t)
		t.Logf("%s: client got %v, upstream got %d %q", tc.name, got, upGot.Code, upGot.Text)
		if got == nil || got.Code != tc.want.clientCode || got.Text != tc.want.clientText {
			t.Errorf("%s: client got %v, want %d %q", tc.name, got, tc.want.clientCode, tc.want.clientText)
		}
		if upGot.Code != tc.want.upCode || upGot.Text != tc.want.upText {
			t.Errorf("%s: upstream got %d %q, want %d %q", tc.name, upGot.Code, upGot.Text, tc.want.upCode, tc.want.upText)
		}
		c.Close()
		id := resp.Header.Get("X-Request-Id")
		r.rows.wait(t, id)
		ids[id] = tc.want
	}
	// The error types are labels of relay_errors_total: two more of the
	// fixed set, each session counted once (not as internal).
	series := getMetrics(t, r.base+"/metrics")
	for _, et := range []string{"client_protocol_error", "upstream_protocol_error"} {
		if n := series[`relay_errors_total{route="realtime",type="`+et+`"}`]; n != 2 {
			t.Errorf("relay_errors_total{type=%q} = %v, want 2", et, n)
		}
	}
	r.stop(t)

	for id, w := range ids {
		rows := servicetest.Query(t, chURL, db, "SELECT error_type, "+
			"visitParamExtractString(response_headers, ':ws-close-code') AS code, "+
			"visitParamExtractString(response_headers, ':ws-close-reason') AS reason, "+
			"visitParamExtractString(response_headers, ':ws-closed-by') AS closed_by "+
			"FROM stream_logs WHERE request_id = '"+id+"'")
		if len(rows) != 1 {
			t.Fatalf("%s: %d rows", id, len(rows))
		}
		row := rows[0]
		if row["error_type"] != w.errType || row["code"] != "1002" || row["reason"] != w.reason || row["closed_by"] != "relay" {
			t.Errorf("row %v, want %s 1002 %q closed by relay", row, w.errType, w.reason)
		}
	}
}
