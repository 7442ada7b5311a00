package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// server is the ClickHouse under test: its HTTP URL and, when found in
// /proc, its process (for CPU time and its native TCP port).
type server struct {
	url string
	hc  *http.Client
	pid int // 0 when not found
}

// query runs sql over HTTP and returns the trimmed answer.
func (s *server) query(ctx context.Context, sql string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/", strings.NewReader(sql))
	if err != nil {
		return "", err
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("clickhouse: %s: http %d: %s", firstWords(sql), resp.StatusCode, bytes.TrimSpace(body))
	}
	return string(bytes.TrimSpace(body)), nil
}

// count is SELECT count() of table.
func (s *server) count(ctx context.Context, table string) (int, error) {
	v, err := s.query(ctx, "SELECT count() FROM "+table)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

func firstWords(sql string) string {
	if len(sql) > 60 {
		return sql[:60] + "..."
	}
	return sql
}

// findServer looks in /proc for the clickhouse-server whose command line
// names the HTTP port of rawURL; its command line also gives the native
// TCP port (--tcp_port=N, as deployments/local/services.sh starts it).
func findServer(rawURL string) (pid, tcpPort int) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, 0
	}
	port := u.Port()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmd, err := os.ReadFile(d + "/cmdline")
		if err != nil || !bytes.Contains(cmd, []byte("clickhouse")) || !bytes.Contains(cmd, []byte("server")) {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		httpOK, tcp := port == "8123", 0
		for _, a := range args {
			if v, ok := strings.CutPrefix(a, "--http_port="); ok {
				httpOK = v == port
			}
			if v, ok := strings.CutPrefix(a, "--tcp_port="); ok {
				tcp, _ = strconv.Atoi(v)
			}
		}
		if httpOK {
			p, _ := strconv.Atoi(filepath.Base(d))
			return p, tcp
		}
	}
	return 0, 0
}

// clockTick is the kernel's USER_HZ: /proc's CPU times count in 1/100 s.
const clockTick = 10 * time.Millisecond

// procCPU is the user+system CPU time pid has used (0 when unreadable).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) in its parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}

// newServer checks that ClickHouse answers at rawURL.
func newServer(ctx context.Context, rawURL string) (*server, error) {
	s := &server{url: strings.TrimRight(rawURL, "/"), hc: &http.Client{Timeout: 5 * time.Minute}}
	if _, err := s.query(ctx, "SELECT 1"); err != nil {
		return nil, err
	}
	s.pid, _ = findServer(s.url)
	return s, nil
}
