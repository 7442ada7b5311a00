package app

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The chaos tests (chaos_*_test.go) attack the relay through real sockets:
// hostile clients, broken upstreams (raw TCP servers written here), dying
// Redis and ClickHouse, signals to the relay process. Each scenario reports
// one machine-readable line,
//
//	CHAOS|scenario|sent|answered|expected errors|unexpected errors|rows stored|rows spooled|rows dropped|leaks
//
// to t.Log and, when CHAOS_REPORT names a file, appended to it; `make chaos`
// formats those lines into one table (the awk program in deployments/local/chaos.sh).

// chaosLong reports whether the long settings apply (make chaos sets
// CHAOS_LONG=1): bigger counts and longer durations.
func chaosLong() bool { return os.Getenv("CHAOS_LONG") != "" }

// chaosResult is one scenario's line of the table.
type chaosResult struct {
	scenario                           string
	sent, answered, expected, unexpect int64
	stored, spooled, dropped           int64
	leaks                              string // "none" or what leaked
	storedNA, spooledNA, droppedNA     bool   // "-" instead of a number
}

var chaosReportMu sync.Mutex

func (c chaosResult) emit(t *testing.T) {
	t.Helper()
	num := func(v int64, na bool) string {
		if na {
			return "-"
		}
		return strconv.FormatInt(v, 10)
	}
	if c.leaks == "" {
		c.leaks = "none"
	}
	line := strings.Join([]string{"CHAOS", c.scenario, num(c.sent, false), num(c.answered, false), num(c.expected, false),
		num(c.unexpect, false), num(c.stored, c.storedNA), num(c.spooled, c.spooledNA), num(c.dropped, c.droppedNA), c.leaks}, "|")
	t.Log(line)
	appendReport(t, line)
}

// appendReport appends a line to CHAOS_REPORT when set.
func appendReport(t *testing.T, line string) {
	p := os.Getenv("CHAOS_REPORT")
	if p == "" {
		return
	}
	chaosReportMu.Lock()
	defer chaosReportMu.Unlock()
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Errorf("CHAOS_REPORT: %v", err)
		return
	}
	fmt.Fprintln(f, line)
	_ = f.Close()
}

// sinkOnly marks the stored/spooled/dropped columns as "-": the scenario
// counts rows with the in-memory sink, not ClickHouse (stored = sink rows).
func sinkOnly(c chaosResult) chaosResult {
	c.spooledNA, c.droppedNA = true, true
	return c
}

// fasthttpHousekeeping are fasthttp's process-wide or per-client background
// goroutines (idle-connection cleaner, worker-pool cleaner, Date updater):
// none is per request, each sleeps out its period.
var fasthttpHousekeeping = []goleak.Option{
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
	// net/http's client side of the test's own keep-alive connections.
	goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
}

// leaks returns "none" or a short description of goroutines started since
// ignore was taken that are still running (goleak retries for a while).
func leaks(ignore goleak.Option) string {
	testClient.CloseIdleConnections()
	err := goleak.Find(append([]goleak.Option{ignore}, fasthttpHousekeeping...)...)
	if err == nil {
		return "none"
	}
	s := err.Error()
	if i := strings.Index(s, "\n"); i > 0 {
		s = s[:i]
	}
	return "goroutines: " + strings.ReplaceAll(s, "|", "/")
}

// startChaosRelay is startRelayWith with extra routes (YAML list items,
// indented by two spaces) added to the test config.
func startChaosRelay(t *testing.T, routes string, mutate func(*Config)) *relay {
	t.Helper()
	return startRelayYAML(t, func(yaml string) string {
		return strings.Replace(yaml, "storage:\n", routes+"storage:\n", 1)
	}, mutate)
}

// rawRoute is a YAML route item for a raw upstream at base.
func rawRoute(name, path, base, kind, more string) string {
	s := "  - name: " + name + "\n    path: " + path + "\n    upstream: " + base + "\n    auth_env: TEST_PROVIDER_KEY\n    kind: " + kind +
		"\n    first_byte_timeout: 1s\n    idle_timeout: 1s\n    connect_timeout: 1s\n"
	if more != "" {
		s += "    " + strings.ReplaceAll(strings.TrimSpace(more), "\n", "\n    ") + "\n"
	}
	return s
}

// rawUpstream is a TCP server that reads one request head (and its
// Content-Length body) from each connection and hands the connection to
// behave, which misbehaves. It counts connections open now.
type rawUpstream struct {
	ln       net.Listener
	behave   func(c net.Conn, head string)
	open     atomic.Int64
	accepted atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]bool
	wg       sync.WaitGroup
}

func startRawUpstream(t *testing.T, behave func(c net.Conn, head string)) *rawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &rawUpstream{ln: ln, behave: behave, conns: map[net.Conn]bool{}}
	u.wg.Add(1)
	go u.accept()
	t.Cleanup(u.close)
	return u
}

func (u *rawUpstream) base() string { return "http://" + u.ln.Addr().String() }

func (u *rawUpstream) accept() {
	defer u.wg.Done()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.accepted.Add(1)
		u.open.Add(1)
		u.mu.Lock()
		u.conns[c] = true
		u.mu.Unlock()
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer func() {
				_ = c.Close()
				u.mu.Lock()
				delete(u.conns, c)
				u.mu.Unlock()
				u.open.Add(-1)
			}()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second)) // nothing here outlives a test
			br := bufio.NewReader(c)
			for {
				head, err := readHead(br)
				if err != nil {
					return
				}
				u.behave(&bufConn{Conn: c, br: br}, head)
				if !strings.Contains(head, "\r\nX-Chaos-Keep: 1") {
					return
				}
			}
		}()
	}
}

// waitClosed waits until the relay has closed every connection to u.
func (u *rawUpstream) waitClosed(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for u.open.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func (u *rawUpstream) close() {
	_ = u.ln.Close()
	u.mu.Lock()
	for c := range u.conns {
		_ = c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

// bufConn reads through the buffered reader that read the head.
type bufConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// readHead reads a request head and discards its Content-Length body.
func readHead(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for b.Len() < 1<<20 {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
		if line == "\r\n" {
			break
		}
	}
	head := b.String()
	for _, l := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "Content-Length") {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
				return head, err
			}
		}
	}
	return head, nil
}

// rawExchange writes req on a new connection to the relay at base and reads
// until the relay closes the connection or d passes.
func rawExchange(t *testing.T, base, req string, d time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := io.WriteString(c, req); err != nil {
		return ""
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// statusOf returns the status code of a raw HTTP response, 0 if none.
func statusOf(resp string) int {
	if !strings.HasPrefix(resp, "HTTP/1.1 ") || len(resp) < 12 {
		return 0
	}
	n, _ := strconv.Atoi(resp[9:12])
	return n
}

// relayReq is a raw POST to path with the relay key; hdr lines end in \r\n.
func relayReq(path, hdr, body string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: relay\r\nAuthorization: Bearer " + relayKey +
		"\r\nContent-Type: application/json\r\n" + hdr + "Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
}

// procSample is the test process's resources: the relay runs in process.
// heapKB is the Go heap in use: the relay's own memory, apart from what
// the runtime keeps from earlier tests and the race detector's shadow
// memory, which RSS includes.
type procSample struct {
	rssKB      int64
	heapKB     int64
	goroutines int
	fds        int
}

func sampleProc() procSample {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return procSample{rssKB: rssKB(os.Getpid()), heapKB: int64(ms.HeapInuse >> 10), goroutines: runtime.NumGoroutine(), fds: openFDs(os.Getpid())}
}

func (p procSample) String() string {
	return fmt.Sprintf("rss=%dMiB heap=%dMiB goroutines=%d fds=%d", p.rssKB>>10, p.heapKB>>10, p.goroutines, p.fds)
}

// rssKB reads VmRSS of pid from /proc.
func rssKB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return -1
}

func openFDs(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// countRows counts the sink's rows matching f.
func (s *rows) count(f func(row) bool) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, r := range s.rows {
		if f == nil || f(r) {
			n++
		}
	}
	return n
}

// allRows returns a copy of the sink's rows.
func (s *rows) all() []row {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]row(nil), s.rows...)
}

// relayBinary builds cmd/relay into the test's temporary directory (the Go
// build cache makes every build after the first a link).
func relayBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "relay")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/relay")
	cmd.Dir = ".."
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v: %s", err, out.String())
	}
	return bin
}
