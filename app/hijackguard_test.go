package app

import (
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// deadlineFailListener accepts connections whose SetDeadline fails, once
// armed, when it would clear the deadlines (as fasthttp does right before
// it runs a hijack handler): a connection the kernel had already closed.
type deadlineFailListener struct {
	net.Listener
	armed *atomic.Bool
}

func (l deadlineFailListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return deadlineFailConn{Conn: c, armed: l.armed}, nil
}

type deadlineFailConn struct {
	net.Conn
	armed *atomic.Bool
}

func (c deadlineFailConn) SetDeadline(t time.Time) error {
	if t.IsZero() && c.armed.Load() {
		return errors.New("test: the connection broke")
	}
	return c.Conn.SetDeadline(t)
}

// TestDetachedHijackNotRun: when fasthttp cannot hand a detached stream's
// connection over (it does not run the hijack handler when clearing the
// deadlines or writing out answers held for pipelining fails), the stream
// is still ended when the server closes the connection: its row is
// written (client_closed) and the relay counts no request in flight, so a
// drain does not wait for it. Before, the stream, its upstream connection
// and its record were held for good.
func TestDetachedHijackNotRun(t *testing.T) {
	for _, proto := range []string{"HTTP/1.1", "HTTP/1.0"} { // 1.0: the answer written apart (http10.go)
		t.Run(proto, func(t *testing.T) { hijackNotRun(t, proto) })
	}
}

func hijackNotRun(t *testing.T, proto string) {
	_, up := mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	y := strings.Replace(poolConfig(t, `
  - name: chat
    path: /v1/chat/completions
    auth_env: TEST_PROVIDER_KEY
    upstream: `+up+`
`, "rate_limit: {disabled: true}"), "  shutdown_grace: 5s", "  shutdown_grace: 5s\n  detach_above: 0", 1)
	armed := new(atomic.Bool)
	p := startPoolOn(t, y, io.Discard, func(ln net.Listener) net.Listener { return deadlineFailListener{Listener: ln, armed: armed} })
	a := p.app
	armed.Store(true)
	c, err := net.Dial("tcp", strings.TrimPrefix(p.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	req := strings.Replace(relayReq("/v1/chat/completions", "", body), " HTTP/1.1\r\n", " "+proto+"\r\n", 1)
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, _ := io.ReadAll(c) // the server closes it: the stream could not be handed over
	rows := waitPoolRows(t, p, 1)
	if rows[0].ErrorType != "client_closed" {
		t.Errorf("row %+v, want client_closed (the client got %q)", rows[0], got)
	}
	for deadline := time.Now().Add(20 * time.Second); a.relay.Active() != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := a.relay.Active(); n != 0 {
		t.Errorf("%d requests still counted in flight", n)
	}
}
