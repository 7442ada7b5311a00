package app

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stuckListener returns the address of a socket that listens with a
// backlog of 0 and never accepts, its queue filled by the test's own
// connections: a connect to it waits for the SYN retries, as one to an
// overloaded upstream does.
func stuckListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
	// Fill the accept queue until a connect no longer completes at once.
	for i := 0; ; i++ {
		if i == 16 {
			t.Fatal("the listener's queue never filled")
		}
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { _ = c.Close() })
	}
}

// TestShutdownGivesUpConnects: a request still connecting to its upstream
// when shutdown's grace period and cuts end is answered 503 shutting_down
// and has its row before Shutdown returns; it used to go on connecting
// (connect_timeout) after the storage closed, its row lost.
func TestShutdownGivesUpConnects(t *testing.T) {
	addr := stuckListener(t)
	r := startRelayYAML(t, func(y string) string {
		y = strings.Replace(y, "shutdown_grace: 5s", "shutdown_grace: 1s", 1)
		return strings.Replace(y, "  - name: refused\n    path: /refused\n    upstream: http://127.0.0.1:1\n",
			"  - name: refused\n    path: /refused\n    upstream: http://"+addr+"\n    connect_timeout: 60s\n", 1)
	}, nil)
	shutdownWhileConnecting(t, r, func() (*http.Response, error) {
		return r.tryPost("/refused", `{"model":"m","stream":true}`, nil)
	})
}

// TestShutdownGivesUpWSHandshakes: a WebSocket handshake still connecting
// to its upstream when shutdown's grace period ends is given up as an HTTP
// route's connect is: 503 shutting_down, its row before Shutdown returns.
func TestShutdownGivesUpWSHandshakes(t *testing.T) {
	addr := stuckListener(t)
	r := startRelayYAML(t, func(y string) string {
		y = strings.Replace(y, "shutdown_grace: 5s", "shutdown_grace: 1s", 1)
		return strings.Replace(y, "storage:\n", "  - name: realtime\n    path: /v1/realtime\n    upstream: ws://"+addr+"\n    auth_env: TEST_PROVIDER_KEY\n    kind: ws\n    connect_timeout: 60s\n    first_byte_timeout: 60s\nstorage:\n", 1)
	}, nil)
	shutdownWhileConnecting(t, r, func() (*http.Response, error) {
		_, resp, err := dialWS(t, r.base, relayKey, nil)
		return resp, err
	})
}

// shutdownWhileConnecting sends a request with send, shuts r down once the
// request is in flight (connecting to a stuck upstream, or waiting for its
// answer), and checks its answer and row: 503 shutting_down, the message
// saying so.
func shutdownWhileConnecting(t *testing.T, r *relay, send func() (*http.Response, error)) {
	t.Helper()
	type answer struct {
		resp *http.Response
		err  error
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := send()
		got <- answer{resp, err}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for r.app.relay.Active() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the request never reached the relay")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // connecting by now
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	start := time.Now()
	if err := r.app.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	took := time.Since(start)
	r.app = nil // stopped
	a := <-got
	if a.resp == nil {
		t.Fatalf("no answer (shutdown took %v): %v", took, a.err)
	}
	body := readAll(t, a.resp)
	if a.resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "shutting_down") || !strings.Contains(body, "the relay is shutting down") {
		t.Fatalf("answer %d %s", a.resp.StatusCode, body)
	}
	row := r.rows.wait(t, a.resp.Header.Get("X-Request-Id"))
	if row.ErrorType != "shutting_down" || row.Status != http.StatusServiceUnavailable {
		t.Fatalf("row %s %d", row.ErrorType, row.Status)
	}
}

// TestShutdownReportsLostRows: rows the storage could not keep at exit (a
// spool write that failed) make Shutdown fail, and the process exit with
// a failure; it returned nil, and the relay exited 0 with rows lost.
func TestShutdownReportsLostRows(t *testing.T) {
	var spool string
	r := startRelayWith(t, "", func(c *Config) {
		c.Storage.ClickHouse.FlushInterval = time.Hour
		spool = c.Storage.SpoolDir
	})
	resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true}`, nil)
	readAll(t, resp)
	r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	// The spool directory gone, a file in its place: the last block
	// cannot be written.
	if err := os.RemoveAll(spool); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(spool, []byte("not a directory"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := r.app.Shutdown(ctx)
	r.app = nil
	if err == nil || !strings.Contains(err.Error(), "storage") {
		t.Fatalf("Shutdown = %v; want the storage's lost rows", err)
	}
}

// TestShutdownCutsHeadWait: a request whose upstream has not answered
// when shutdown's grace period ends is answered 503 shutting_down, saying
// the relay is shutting down; it was answered 499 (a client that left)
// with "the upstream closed the connection", and its row said 499.
func TestShutdownCutsHeadWait(t *testing.T) {
	up := connTarget(t, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }) // takes the request, never answers
	r := startRelayYAML(t, func(y string) string {
		y = strings.Replace(y, "shutdown_grace: 5s", "shutdown_grace: 1s", 1)
		return strings.Replace(y, "  - name: refused\n    path: /refused\n    upstream: http://127.0.0.1:1\n",
			"  - name: refused\n    path: /refused\n    upstream: http://"+up+"\n    first_byte_timeout: 60s\n", 1)
	}, nil)
	shutdownWhileConnecting(t, r, func() (*http.Response, error) {
		return r.tryPost("/refused", `{"model":"m","stream":true}`, nil)
	})
}
