//go:build !race

package app

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/quota"
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

// startAnsweringUpstream reads each connection's request and answers it
// with a whole Anthropic stream that reports its usage, then closes the
// connection, all from one goroutine.
func startAnsweringUpstream(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	event := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n" +
		"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n"
	answer := "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n" +
		fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(event), event)
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err == nil {
				_, err = io.Copy(io.Discard, req.Body)
			}
			if err == nil {
				_, _ = io.WriteString(c, answer)
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// TestStreamStackAllocation: an open stream costs the relay a 4 KiB
// goroutine stack, not the 8 KiB that serving the request up to its head
// grows, also on a keep-alive connection after a whole stream (its end,
// the record's way to the sinks included): by default (detach_streams)
// because the stream is detached from the server's goroutine
// (handlers/detach.go), which also lets go of the request context; with
// server.small_stacks because the request is served up to its head on a
// helper (handlers/handoff.go).
// The relay decides through Redis with a token budget, so a stream's end
// charges its tokens there (the whole stream reports its usage).
// 400 client connections each relay one whole stream, then open a second
// that is held after its first event, and the process's goroutine stacks
// grow by less than the bound per connection: 4 KiB, plus the idle
// goroutines' share (8 KiB and more when the connection's goroutine
// serves the whole request or ends the stream). Detached, the live heap
// grows by less too, as no request context is held. Measured here (n =
// 400): served by the server's goroutine, 9.9-10.3 KiB of stack and 16.2
// KiB of live heap per stream; detached, 4.9-7.3 and 10.1-10.7 KiB. Not
// under -race, whose instrumentation deepens every frame.
func TestStreamStackAllocation(t *testing.T) {
	t.Run("detached", func(t *testing.T) {
		streamStacks(t, func(c *Config) {}, 8<<10, 13<<10)
	})
	// Written by the server's goroutine (detach_streams false, or fewer
	// requests in flight than detach_above), a stream keeps the 8 KiB its
	// first phase grew, and copying it in the poller's callback
	// (upstream/pollcopy.go) must not double that: under 12 KiB a stream.
	t.Run("server", func(t *testing.T) {
		f := false
		streamStacks(t, func(c *Config) { c.Server.DetachStreams = &f }, 12<<10, 0)
	})
	t.Run("small_stacks", func(t *testing.T) {
		streamStacks(t, func(c *Config) { c.Server.SmallStacks = true }, 7<<10, 0)
	})
	// A stream that waits for its next event in the idle set
	// (server.idle_wait; here every wait after the first event) holds no
	// goroutine: only the idle writers' share is left, less than the 4 KiB
	// stack a waiting goroutine would hold. That share varies with how far
	// the pooled writers' stacks grew: run alone, 1.4-2.8 KiB a stream
	// before the writers copied in the poller's callback, 1.3-3.4 after
	// (a bound of 2 KiB failed either way).
	t.Run("idle_wait", func(t *testing.T) {
		streamStacks(t, func(c *Config) { c.Server.IdleWait = time.Nanosecond }, 4<<10, 13<<10)
	})
}

// streamStacks is TestStreamStackAllocation for the relay as configure
// leaves it: stacks must grow by less than bound bytes per open stream,
// and the live heap by less than heapBound (0: not checked).
func streamStacks(t *testing.T, configure func(*Config), bound, heapBound float64) {
	up := startHoldingUpstream(t)
	whole := startAnsweringUpstream(t)
	lim, _ := withLimits(servicetest.Redis(t), 1000000, 1000000)
	r := startRelayWith(t, "", func(c *Config) {
		configure(c)
		lim(c)
		c.RateLimit.TokensPerMinute = quota.MaxLimit
		for i := range c.Routes {
			switch c.Routes[i].Name {
			case "openai":
				c.Routes[i].Upstream = "http://" + up.ln.Addr().String()
				c.Routes[i].IdleTimeout = 5 * time.Minute
			case "anthropic":
				c.Routes[i].Upstream = whole
			}
		}
	})
	addr := strings.TrimPrefix(r.base, "http://")
	request := func(path string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
			"\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n{\"stream\":true}"
	}
	// open relays a whole stream on each of n new connections, then opens
	// one that stays open on each.
	open := func(n int) {
		conns := make([]net.Conn, n)
		readers := make([]*bufio.Reader, n)
		for i := range conns {
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			conns[i], readers[i] = c, bufio.NewReader(c)
			if _, err := io.WriteString(c, request("/v1/messages")); err != nil {
				t.Fatal(err)
			}
		}
		for i, br := range readers {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("whole stream %d: %v", i, err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 || !bytes.Contains(body, []byte("data: ")) || resp.Close {
				t.Fatalf("whole stream %d: status %d, close %v, %q, %v", i, resp.StatusCode, resp.Close, body, err)
			}
			if _, err := io.WriteString(conns[i], request("/v1/chat/completions")); err != nil {
				t.Fatal(err)
			}
		}
		for i, br := range readers {
			var got []byte
			for !bytes.Contains(got, []byte("data: ")) {
				line, err := br.ReadSlice('\n')
				if err != nil {
					t.Fatalf("held stream %d: %v after %q", i, err, got)
				}
				got = append(got, line...)
			}
			if !bytes.HasPrefix(got, []byte("HTTP/1.1 200")) {
				t.Fatalf("held stream %d: %q", i, got)
			}
		}
	}
	stacks := func() (stack, heap uint64) {
		for i := 0; i < 4; i++ {
			runtime.GC() // idle goroutines' stacks shrink at each
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.StackInuse, m.HeapAlloc
	}
	open(8) // warm: helpers, fasthttp workers and detached goroutines exist once
	const n = 400
	before, heapBefore := stacks()
	goroutines := runtime.NumGoroutine()
	open(n)
	// The server's idle workers go after a second when streams are
	// detached (app.go): they served each connection's first request.
	time.Sleep(2500 * time.Millisecond)
	after, heapAfter := stacks()
	perStream := (float64(after) - float64(before)) / n
	heapPerStream := (float64(heapAfter) - float64(heapBefore)) / n
	// Besides a goroutine per connection, idle goroutines kept for reuse
	// (their stacks shrunk by the collections above) are counted.
	t.Logf("goroutine stacks: %.0f bytes per open stream (%d -> %d bytes; %d -> %d goroutines); live heap %.0f bytes per open stream",
		perStream, before, after, goroutines, runtime.NumGoroutine(), heapPerStream)
	if perStream >= bound {
		t.Errorf("goroutine stacks grow by %.0f bytes per open stream, want under %.0f (4 KiB for the stream's goroutine)", perStream, bound)
	}
	if heapBound > 0 && heapPerStream >= heapBound {
		t.Errorf("the live heap grows by %.0f bytes per open stream, want under %.0f (no request context held)", heapPerStream, heapBound)
	}
}
