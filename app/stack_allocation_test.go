//go:build !race

package app

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdingUpstream answers every connection with a stream's head and first
// event, then holds it open, all from one goroutine: it adds no goroutine
// stack per stream to what the test measures.
type holdingUpstream struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func startHoldingUpstream(t *testing.T) *holdingUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &holdingUpstream{ln: ln, done: make(chan struct{})}
	event := "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
	answer := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n", len(event), event)
	go func() {
		defer close(u.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, answer)
			u.mu.Lock()
			u.conns = append(u.conns, c)
			u.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-u.done
		u.mu.Lock()
		for _, c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
	})
	return u
}

// TestStreamStackAllocation: an open stream costs its connection's
// goroutine a 4 KiB stack, not the 8 KiB that serving the request up to
// its head grows (handlers/handoff.go). 200 streams are held open after
// their first event, each on its own client connection, and the relay's
// goroutine stacks grow by less than 6 KiB per stream (8 KiB and more when
// the connection's goroutine serves the whole request). Not under -race,
// whose instrumentation deepens every frame.
func TestStreamStackAllocation(t *testing.T) {
	up := startHoldingUpstream(t)
	r := startRelayWith(t, "", func(c *Config) {
		for i := range c.Routes {
			if c.Routes[i].Name == "openai" {
				c.Routes[i].Upstream = "http://" + up.ln.Addr().String()
				c.Routes[i].IdleTimeout = 5 * time.Minute
			}
		}
	})
	addr := strings.TrimPrefix(r.base, "http://")
	request := "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
		"\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"stream\":true}"
	open := func(n int) []net.Conn {
		conns := make([]net.Conn, 0, n)
		for i := 0; i < n; i++ {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if _, err := io.WriteString(c, request); err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		for i, c := range conns {
			_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
			br := bufio.NewReader(c)
			var got []byte
			for !bytes.Contains(got, []byte("data: ")) {
				line, err := br.ReadSlice('\n')
				if err != nil {
					t.Fatalf("stream %d: %v after %q", i, err, got)
				}
				got = append(got, line...)
			}
			if !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
				t.Fatalf("stream %d: %q", i, got)
			}
		}
		return conns
	}
	stacks := func() uint64 {
		for i := 0; i < 4; i++ {
			runtime.GC() // idle goroutines' stacks shrink at each
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.StackInuse
	}
	open(8) // warm: helpers and fasthttp workers exist once
	const n = 200
	before := stacks()
	open(n)
	after := stacks()
	perStream := (float64(after) - float64(before)) / n
	t.Logf("goroutine stacks: %.0f bytes per open stream (%d -> %d)", perStream, before, after)
	if perStream >= 6<<10 {
		t.Errorf("goroutine stacks grow by %.0f bytes per open stream, want under 6 KiB (4 KiB for the connection's goroutine)", perStream)
	}
}
