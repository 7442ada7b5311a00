package handlers

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/quota"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
)

// fullStorage is an Admission that refuses every row while full is set,
// and can tell so without reserving (storageProbe), as a storage whose
// memory budget has no room for another row slot.
type fullStorage struct {
	full    atomic.Bool
	refused atomic.Int64 // Admit's refusals
}

func (s *fullStorage) Admit(*record.Record) bool {
	if s.full.Load() {
		s.refused.Add(1)
		return false
	}
	return true
}

func (s *fullStorage) Overloaded() bool { return s.full.Load() }

// countingLimiter admits everything and counts its decisions.
type countingLimiter struct{ takes atomic.Int64 }

func (l *countingLimiter) Take(context.Context, string, string) quota.Decision {
	l.takes.Add(1)
	return quota.Decision{Allowed: true, Limit: 100, Remaining: 99}
}

func (l *countingLimiter) Debit(context.Context, string, int64) {}

// storageRow is what a test reads of a finished record.
type storageRow struct {
	status         int
	errType, keyID string
	bytesIn        int64
}

// storageRows is a sink keeping each record's outcome by id.
type storageRows struct {
	mu   sync.Mutex
	rows map[string]storageRow
}

func (s *storageRows) Write(r *record.Record) error {
	s.mu.Lock()
	s.rows[r.IDString()] = storageRow{status: r.Status, errType: r.ErrorType, keyID: r.KeyID, bytesIn: r.BytesIn}
	s.mu.Unlock()
	return nil
}

// wait returns the row of id, waiting for it for up to 10 seconds.
func (s *storageRows) wait(t *testing.T, id string) storageRow {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		r, ok := s.rows[id]
		s.mu.Unlock()
		if ok {
			return r
		}
	}
	t.Fatalf("no row for request %q", id)
	return storageRow{}
}

// storageRelay serves the relay, with storage admission st and the
// ExpectContinue handler, over a real fasthttp server in front of the mock
// upstream; it returns the server's address, the rows and the mock.
func storageRelay(t *testing.T, st Admission, lim Limiter) (string, *storageRows, *mockllm.Server) {
	t.Helper()
	rows := &storageRows{rows: map[string]storageRow{}}
	addr, mock := serveChatRelay(t, upstream.Options{}, Options{Limiter: lim, Sinks: []Sink{rows}, Admission: st, BodyLimit: 8 << 20, OwnPaths: []string{"/healthz", "/readyz", "/metrics"}},
		&fasthttp.Server{MaxRequestBodySize: 8 << 20}, true)
	return addr, rows, mock
}

// TestExpectContinueStorageRefusedBeforeUpload: while the storage cannot
// take another row, a request with "Expect: 100-continue" gets the 503
// storage_overloaded a request refused after its upload gets (JSON error,
// Retry-After, X-Request-Id, a row with the declared length as bytes in),
// instead of 100 Continue, on a closed connection; the storage's
// admission is asked once and the limiter not at all. Once it has room, the
// same request gets 100 Continue and is served.
func TestExpectContinueStorageRefusedBeforeUpload(t *testing.T) {
	st := &fullStorage{}
	lim := &countingLimiter{}
	addr, rows, mock := storageRelay(t, st, lim)
	body := `{"model":"m","messages":[],"pad":"` + strings.Repeat("a", 3000) + `"}`
	head := "POST /v1/chat/completions HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n" +
		"Authorization: Bearer sk-test\r\nExpect: 100-continue\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	send := func() (*http.Response, *bufio.Reader, net.Conn) { return servicetest.SendHead(t, addr, head) }

	st.full.Store(true)
	resp, br, _ := send()
	if resp.StatusCode == http.StatusContinue {
		t.Fatal("100 Continue: the client would upload its body before the storage refuses it")
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e struct {
		Error struct{ Type, Message string } `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("answer body %q: %v", b, err)
	}
	id := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusServiceUnavailable || e.Error.Type != record.ErrStorageOverloaded ||
		resp.Header.Get("Retry-After") != "1" || len(id) != record.IDLen || !resp.Close {
		t.Fatalf("got %d %s, Retry-After %q, id %q, close %v; want 503 storage_overloaded, Retry-After 1, an id, closed",
			resp.StatusCode, b, resp.Header.Get("Retry-After"), id, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the connection was not closed after the refusal: %v", err)
	}
	row := rows.wait(t, id)
	if row.status != http.StatusServiceUnavailable || row.errType != record.ErrStorageOverloaded || row.bytesIn != int64(len(body)) {
		t.Errorf("row %+v, want 503 storage_overloaded with bytes_in %d", row, len(body))
	}
	if n := st.refused.Load(); n != 1 {
		t.Errorf("the storage's admission refused %d times, want once", n)
	}
	if n := lim.takes.Load(); n != 0 {
		t.Errorf("the limiter was asked %d times for a request the storage refused", n)
	}

	st.full.Store(false)
	resp, br, c := send()
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("with room in storage: %d before the upload, want 100", resp.StatusCode)
	}
	if _, err := io.WriteString(c, body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if row := rows.wait(t, resp.Header.Get("X-Request-Id")); resp.StatusCode != 200 || row.status != 200 || row.bytesIn != int64(len(body)) {
		t.Errorf("with room in storage: %d, row %+v", resp.StatusCode, row)
	}
	if n := lim.takes.Load(); n != 1 {
		t.Errorf("the limiter was asked %d times for the request served, want once", n)
	}
	if n := mock.Count(); n != 1 {
		t.Errorf("%d requests reached the upstream, want the one admitted", n)
	}
}

// TestExpectContinueStorageRefusedCurl: curl, which sends "Expect:
// 100-continue" on its own for a body over 1 MiB, uploads nothing of its
// 2 MiB body when the storage is full, and gets the 503.
func TestExpectContinueStorageRefusedCurl(t *testing.T) {
	st := &fullStorage{}
	st.full.Store(true)
	addr, rows, _ := storageRelay(t, st, nil)
	id := curlLargeUpload(t, addr, "/v1/chat/completions", "503 0")
	if row := rows.wait(t, id); row.errType != record.ErrStorageOverloaded {
		t.Errorf("row %+v, want storage_overloaded", row)
	}
}

// curlLargeUpload posts a 2 MiB body to path with curl (which asks for
// 100-continue on its own for a body over 1 MiB), checks its status and
// bytes uploaded against want ("503 0") and returns the answer's
// X-Request-Id. It skips the test where curl is not installed.
func curlLargeUpload(t *testing.T, addr, path, want string) string {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	p := filepath.Join(t.TempDir(), "large.json")
	if err := os.WriteFile(p, []byte(`{"model":"m","pad":"`+strings.Repeat("a", 2<<20)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(curl, "-s", "-o", "/dev/null", "-D", "-", "-w", "\n%{http_code} %{size_upload}", "-m", "20",
		"-H", "Content-Type: application/json", "-H", "Authorization: Bearer sk-test", "--data-binary", "@"+p,
		"http://"+addr+path).Output()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if got := lines[len(lines)-1]; got != want {
		t.Fatalf("curl: %q (status, bytes uploaded), want %q:\n%s", got, want, out)
	}
	var id string
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "X-Request-Id") {
			id = strings.TrimSpace(v)
		}
	}
	return id
}
