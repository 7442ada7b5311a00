package app

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestExpectNotForwarded: the relay answers a client's Expect: 100-continue
// itself and sends the upstream the body whole, without the Expect field:
// an upstream that answered the field with a final status (417) without
// reading the body read the body as the connection's next request, and its
// answer to that went to the next client of the pooled connection.
func TestExpectNotForwarded(t *testing.T) {
	var mu sync.Mutex
	var heads []string
	up := startRawUpstream(t, func(c net.Conn, head string) {
		mu.Lock()
		heads = append(heads, head)
		mu.Unlock()
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	})
	r := startChaosRelay(t, rawRoute("exp", "/exp", "http://"+up.ln.Addr().String(), "sse", ""), nil)
	c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	body := `{"model":"m"}`
	req := "POST /exp HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
		"\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: " + itoa(len(body)) + "\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100 ") {
		t.Fatalf("no 100 Continue: %q, %v", line, err)
	}
	if _, err := io.WriteString(c, body); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "HTTP/1.1 200") {
		t.Fatalf("answer: %.200q", rest)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(heads) != 1 {
		t.Fatalf("%d requests upstream, want 1", len(heads))
	}
	if strings.Contains(strings.ToLower(heads[0]), "expect:") {
		t.Errorf("the upstream got the client's Expect field:\n%s", heads[0])
	}
}
