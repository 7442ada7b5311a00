package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestAcceptOutOfDescriptors: a relay whose file descriptors run out under
// a burst of connections keeps running (accept fails with EMFILE and is
// tried again), and serves again once the burst is gone. Before the fix
// fasthttp took EMFILE for the listener's end and the relay shut down.
func TestAcceptOutOfDescriptors(t *testing.T) {
	addr, cfg := showRelayConfig(t, "  - {name: chat, path: /v1/chat/completions, upstream: \""+closedClickHouse(t)+"\", auth_env: QA_GEMINI_KEY}\n")
	p := startRelayProc(t, cfg)
	waitReady(t, "http://"+addr)
	pid := p.cmd.Process.Pid
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &old); err != nil {
		t.Fatal(err)
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(len(fds) + 4), Max: old.Max}, nil); err != nil {
		t.Fatalf("lowering the relay's descriptor limit: %v", err)
	}
	var burst []net.Conn
	defer func() {
		for _, c := range burst {
			_ = c.Close()
		}
	}()
	for range 40 { // the kernel's backlog takes them; accepts fail past the limit
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			break
		}
		burst = append(burst, c)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.errOut.String(), "accepting a connection failed") {
		select {
		case err := <-p.done:
			t.Fatalf("the relay exited (%v) when its descriptors ran out; stderr:\n%s", err, p.errOut.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no accept failure logged with %d connections; stderr:\n%s", len(burst), p.errOut.String())
		}
	}
	for _, c := range burst {
		_ = c.Close()
	}
	burst = nil
	_ = unix.Prlimit(pid, unix.RLIMIT_NOFILE, &old, nil)
	select {
	case err := <-p.done:
		t.Fatalf("the relay exited (%v) when its descriptors ran out; stderr:\n%s", err, p.errOut.String())
	default:
	}
	// Served again: /readyz answers, not a refused or reset connection.
	deadline = time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not served after the burst: %v; stderr:\n%s", err, p.errOut.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case err := <-p.done:
		t.Fatalf("the relay exited (%v); stderr:\n%s", err, p.errOut.String())
	default:
	}
}
