package app

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestUnkeyedBodyNotHeld: a request without a relay key that declares a
// large body is answered 401 at once and its declared size is never
// allocated: fasthttp allocates a body's whole Content-Length before it
// reads any, and 30 heads declaring 32 MiB with one byte of body each held
// a gigabyte until read_timeout, no key needed. A keyed request's large
// body is read as before.
func TestUnkeyedBodyNotHeld(t *testing.T) {
	r := startRelayWith(t, "", func(c *Config) {
		c.Server.MaxBodyBytes = 32 << 20
		for i := range c.Routes {
			c.Routes[i].MaxBodyBytes = 32 << 20
		}
	})
	addr := strings.TrimPrefix(r.base, "http://")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 8
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(c, "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: 33554432\r\n\r\n{"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("head declaring 32 MiB without a key: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		if resp.StatusCode != 401 || !strings.Contains(string(body), record.ErrUnauthorized) {
			t.Fatalf("head declaring 32 MiB without a key: %d %s; want 401 unauthorized", resp.StatusCode, body)
		}
		if rw := r.rows.wait(t, resp.Header.Get("X-Request-Id")); rw.Status != 401 || rw.ErrorType != record.ErrUnauthorized {
			t.Errorf("row %d %q", rw.Status, rw.ErrorType)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4*(32<<20) {
		t.Errorf("%d heads declaring 32 MiB without a key: %d MiB allocated; their bodies were allocated", n, grew>>20)
	}
	// A client uploading all the while reads the 401, not a reset: the
	// close lingers as for a 413.
	big := bytes.Repeat([]byte("x"), 8<<20)
	for i := 0; i < 10; i++ {
		resp, err := http.Post(r.base+"/v1/chat/completions", "application/json", bytes.NewReader(big))
		if err != nil {
			t.Fatalf("upload %d of 8 MiB without a key: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("upload %d of 8 MiB without a key: %d %s", i, resp.StatusCode, b)
		}
	}
	// With the key, a body over 64 KiB is read and relayed.
	resp := r.post(t, "/v1/chat/completions", `{"model":"m","pad":"`+strings.Repeat("x", 200<<10)+`"}`, nil)
	if b := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("keyed 200 KiB body: %d %s", resp.StatusCode, b)
	}
	// The key in the query (Gemini's ?key=), read before the URI is parsed.
	resp, err := http.Post(r.base+"/v1/chat/completions?key="+relayKey, "application/json",
		strings.NewReader(`{"model":"m","pad":"`+strings.Repeat("x", 200<<10)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	if b := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("200 KiB body keyed by ?key=: %d %s", resp.StatusCode, b)
	}
}
