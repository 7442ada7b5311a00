package handlers

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// expectRouteHead is the head of a request of method to path that asks for
// 100-continue (with expect), with the header lines hdr (each ending in
// CRLF) and a declared body of n bytes.
func expectRouteHead(method, path, hdr string, n int, expect bool) string {
	if expect {
		hdr += "Expect: 100-continue\r\n"
	}
	return method + " " + path + " HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n" + hdr +
		"Content-Length: " + strconv.Itoa(n) + "\r\n\r\n"
}

// plainAnswer sends head and body whole, without Expect, on a new
// connection to addr and returns the answer's status, its body and the
// request's row.
func plainAnswer(t *testing.T, addr string, rows *storageRows, head, body string) (int, string, storageRow) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, head+body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b), rows.wait(t, resp.Header.Get("X-Request-Id"))
}

// TestExpectContinueNoRouteRefusedBeforeUpload: a request with "Expect:
// 100-continue" on a path no route has gets the 404 it gets without
// Expect (same JSON error, a row that names no key, bytes in the declared
// length) instead of 100 Continue, on a closed connection; so does a method
// Fiber does not route to its own paths (POST /healthz). Storage admission
// on such a path is decided before the upload too (503). A body over the
// server's limit is 413 before the key is looked at, as fasthttp's own
// limit answers it without Expect. Fiber's own GET and HEAD routes still
// get 100 Continue. The limiter is never asked.
func TestExpectContinueNoRouteRefusedBeforeUpload(t *testing.T) {
	st := &fullStorage{}
	lim := &countingLimiter{}
	addr, rows, mock := storageRelay(t, st, lim)
	body := `{"model":"m","pad":"` + strings.Repeat("a", 3000) + `"}`
	auth := "Authorization: Bearer sk-test\r\n"
	tests := []struct {
		name, method, path, hdr string
		n                       int
		full                    bool // the storage is full
		status                  int
		errType                 string
		plain                   bool // compare with the same request without Expect
	}{
		{"no route, keyed", "POST", "/nowhere", auth, len(body), false, 404, record.ErrNotFound, true},
		{"no route, no key", "POST", "/v1/nowhere", "", len(body), false, 404, record.ErrNotFound, true},
		{"no route, unknown key", "PUT", "/nowhere/", "Authorization: Bearer sk-wrong\r\n", len(body), false, 404, record.ErrNotFound, true},
		{"POST to a Fiber path", "POST", "/healthz", auth, len(body), false, 404, record.ErrNotFound, true},
		{"no route, storage full", "POST", "/nowhere", auth, len(body), true, 503, record.ErrStorageOverloaded, true},
		{"over the server's limit, no key", "POST", "/v1/chat/completions", "", 9 << 20, false, 413, record.ErrBodyTooLarge, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st.full.Store(tt.full)
			resp, br, _ := servicetest.SendHead(t, addr, expectRouteHead(tt.method, tt.path, tt.hdr, tt.n, true))
			if resp.StatusCode == http.StatusContinue {
				t.Fatal("100 Continue: the client would upload its body before it is refused")
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			id := resp.Header.Get("X-Request-Id")
			if resp.StatusCode != tt.status || !strings.Contains(string(b), `"type":"`+tt.errType+`"`) || len(id) != record.IDLen || !resp.Close {
				t.Fatalf("got %d %s, id %q, close %v; want %d %s, an id, closed", resp.StatusCode, b, id, resp.Close, tt.status, tt.errType)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("the connection was not closed after the refusal: %v", err)
			}
			row := rows.wait(t, id)
			if row.status != tt.status || row.errType != tt.errType || row.bytesIn != int64(tt.n) {
				t.Errorf("row %+v, want %d %s with bytes_in %d", row, tt.status, tt.errType, tt.n)
			}
			if !tt.plain {
				return
			}
			status, plainBody, plainRow := plainAnswer(t, addr, rows, expectRouteHead(tt.method, tt.path, tt.hdr, len(body), false), body)
			if status != resp.StatusCode || plainBody != string(b) {
				t.Errorf("without Expect: %d %s; with: %d %s", status, plainBody, resp.StatusCode, b)
			}
			if plainRow != row {
				t.Errorf("row without Expect %+v, with %+v", plainRow, row)
			}
		})
	}
	st.full.Store(false)
	for _, h := range []string{"GET /healthz", "HEAD /Readyz/", "GET /metrics"} {
		method, path, _ := strings.Cut(h, " ")
		resp, _, _ := servicetest.SendHead(t, addr, expectRouteHead(method, path, auth, len(body), true))
		if resp.StatusCode != http.StatusContinue {
			t.Errorf("%s, a path Fiber serves: %d before the upload, want 100", h, resp.StatusCode)
		}
	}
	if n := lim.takes.Load(); n != 0 {
		t.Errorf("the limiter was asked %d times", n)
	}
	if n := mock.Count(); n != 0 {
		t.Errorf("%d requests reached the upstream", n)
	}
}

// TestExpectContinueNoRouteCurl: curl, which asks for 100-continue on its
// own for a body over 1 MiB, uploads nothing of a 2 MiB body to a path no
// route has and gets the 404.
func TestExpectContinueNoRouteCurl(t *testing.T) {
	addr, rows, _ := storageRelay(t, &fullStorage{}, nil)
	id := curlLargeUpload(t, addr, "/v1/nowhere", "404 0")
	if row := rows.wait(t, id); row.errType != record.ErrNotFound || row.keyID == "" {
		t.Errorf("row %+v, want not_found naming the caller's key", row)
	}
}
