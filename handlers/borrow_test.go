package handlers

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
)

// bodyRows is a sink keeping a copy of each record's request body.
type bodyRows struct {
	mu   sync.Mutex
	rows map[string]bodyRow
}

type bodyRow struct {
	body      string
	truncated bool
	errType   string
}

func (s *bodyRows) Write(r *record.Record) error {
	s.mu.Lock()
	s.rows[r.IDString()] = bodyRow{body: string(r.RequestBody), truncated: r.Truncated, errType: r.ErrorType}
	s.mu.Unlock()
	return nil
}

func (s *bodyRows) get(id string) (bodyRow, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rows[id]
	return r, ok
}

// borrowRelay serves the relay over a real fasthttp server (request
// buffers released at reset, as the app runs it) in front of the mock
// upstream, capturing up to captureLimit bytes of each request body. Its
// sinks are around, sink, after.
func borrowRelay(t *testing.T, captureLimit int, around ...Sink) (addr string, sink *bodyRows) {
	t.Helper()
	sink = &bodyRows{rows: map[string]bodyRow{}}
	sinks := []Sink{sink}
	if len(around) == 2 {
		sinks = []Sink{around[0], sink, around[1]}
	}
	addr, _ = serveChatRelay(t, upstream.Options{Capture: true, MaxCaptureBytes: captureLimit}, Options{Sinks: sinks},
		&fasthttp.Server{ReduceMemoryUsage: true, MaxRequestBodySize: 8 << 20}, false)
	return addr, sink
}

// chatBody is a chat request of about n bytes, distinct for each seed.
func chatBody(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := []byte(fmt.Sprintf(`{"model":"m-%d","stream":true,"messages":[{"role":"user","content":"`, seed))
	for len(b) < n {
		b = append(b, byte('a'+rng.IntN(26)))
	}
	return append(b, `"}]}`...)
}

// TestBorrowedBodiesStored: request bodies captured by reference reach the
// sink intact (cut at the capture limit) under concurrent requests whose
// buffers fasthttp recycles, also when the client leaves mid-stream.
func TestBorrowedBodiesStored(t *testing.T) {
	const limit = 256 << 10
	addr, sink := borrowRelay(t, limit)
	client := &http.Client{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	type sent struct {
		id   string
		body []byte
		left bool // the client left mid-stream
	}
	var mu sync.Mutex
	var all []sent
	for g := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				seed := uint64(g*100 + i)
				body := chatBody(seed, 16<<10+int(seed*37%400)<<10)
				left := i%4 == 3
				id, err := borrowRequest(client, addr, body, left)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				all = append(all, sent{id: id, body: body, left: left})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, s := range all {
		var row bodyRow
		ok := false
		for end := time.Now().Add(10 * time.Second); !ok && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
			row, ok = sink.get(s.id)
		}
		if !ok {
			t.Fatalf("request %s: no row", s.id)
		}
		if s.left && row.errType != record.ErrClientClosed {
			t.Errorf("request %s: the client left, error type %q", s.id, row.errType)
		}
		want := s.body[:min(len(s.body), limit)]
		if row.body != string(want) || row.truncated != (len(s.body) > limit) {
			t.Fatalf("request %s (left %v, error %q): stored body of %d bytes (truncated %v) differs from the %d sent", s.id, s.left, row.errType, len(row.body), row.truncated, len(s.body))
		}
	}
}

// bodyTaker is a sink that takes large request bodies by reference, as the
// storage does, and counts the bodies it got.
type bodyTaker struct {
	mu    sync.Mutex
	taken int
	bad   int // taken bodies that were not a request's
}

func (s *bodyTaker) Write(r *record.Record) error {
	body, buf := r.TakeRequestBody()
	if buf == nil {
		return nil
	}
	s.mu.Lock()
	s.taken++
	if !bytes.HasPrefix(body, []byte(`{"model":"m-`)) {
		s.bad++
	}
	s.mu.Unlock()
	record.GiveBodyBuffer(buf)
	return nil
}

// TestOnlyLastSinkTakesBody: a sink that takes request bodies takes none
// when other sinks follow it, so that they see every body whole; the same
// sink in the last place takes them. (Whether a body can be taken also
// depends on the capacity of the buffer fasthttp's pool read it into; the
// largest body here is larger than any earlier test's, so its buffer is
// made for it.)
func TestOnlyLastSinkTakesBody(t *testing.T) {
	first, last := &bodyTaker{}, &bodyTaker{}
	addr, rows := borrowRelay(t, 4<<20, first, last)
	client := &http.Client{Timeout: 30 * time.Second}
	const n = 6
	var ids []string
	var bodies [][]byte
	for i := range n {
		body := chatBody(uint64(i), 100<<10+i*(500<<10)) // 100 KiB to 2.5 MiB
		id, err := borrowRequest(client, addr, body, false)
		if err != nil {
			t.Fatal(err)
		}
		ids, bodies = append(ids, id), append(bodies, body)
	}
	for i, id := range ids {
		row, ok := rows.get(id)
		if !ok || row.body != string(bodies[i]) {
			t.Fatalf("request %d: the sink after the first taker got %d bytes of body, want the %d sent (row found: %v)", i, len(row.body), len(bodies[i]), ok)
		}
	}
	first.mu.Lock()
	last.mu.Lock()
	defer first.mu.Unlock()
	defer last.mu.Unlock()
	if first.taken != 0 {
		t.Errorf("the first of three sinks took %d bodies, want none", first.taken)
	}
	if last.taken == 0 || last.bad != 0 {
		t.Errorf("the last sink took %d of %d bodies, %d of them not a request's; want some, all whole", last.taken, n, last.bad)
	}
}

// borrowRequest sends one chat request and returns its request id; left
// makes the client close the connection once the answer has begun.
func borrowRequest(client *http.Client, addr string, body []byte, left bool) (string, error) {
	if !left {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk-test")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(mockllm.HeaderChunks, "10")
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return "", err
		}
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Request-Id"), nil
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer sk-test\r\nContent-Type: application/json\r\n" +
		mockllm.HeaderChunks + ": 200\r\n" + mockllm.HeaderDelayMs + ": 20\r\nContent-Length: " + fmt.Sprint(len(body)) + "\r\n\r\n"
	if _, err := c.Write(append([]byte(head), body...)); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return "", fmt.Errorf("status %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return resp.Header.Get("X-Request-Id"), nil // closing leaves mid-stream
}
