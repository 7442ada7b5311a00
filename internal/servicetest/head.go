package servicetest

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// SendHead writes head (a request's head, and whatever part of its body the
// test wants sent with it) on a new connection to addr and returns the
// first answer to it (what a client that waits to upload reads: a 100
// Continue or a refusal), the reader of what follows and the connection,
// closed with the test. The connection's deadline is 20 s.
func SendHead(tb testing.TB, addr, head string) (*http.Response, *bufio.Reader, net.Conn) {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		tb.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("no answer to the head: %v", err)
	}
	return resp, br, c
}
