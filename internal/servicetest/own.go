package servicetest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Process is a server process of the test's own on free loopback ports, so
// that a test may stop, kill or restart it without disturbing other tests.
// It is stopped when the test ends.
type Process struct {
	tb    testing.TB
	name  string
	args  []string
	dir   string
	env   []string // nil: the test's own
	ready func() bool
	cmd   *exec.Cmd
}

// Start (re)starts the process and waits until it answers.
func (p *Process) Start() {
	p.tb.Helper()
	if p.cmd != nil {
		return
	}
	p.cmd = exec.Command(p.name, p.args...)
	p.cmd.Dir = p.dir
	p.cmd.Env = p.env
	// Killed with the test binary, even one that a -timeout panic ends
	// before its cleanups run.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.OpenFile(filepath.Join(p.dir, "process.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err == nil {
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
		defer logf.Close()
	}
	if err := p.cmd.Start(); err != nil {
		p.tb.Fatalf("start %s: %v", p.name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.ready() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.tb.Fatalf("%s did not come up (log in %s)", p.name, p.dir)
}

// Kill stops the process with SIGKILL, like a crash, and waits for it.
func (p *Process) Kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.cmd = nil
}

// Signal sends sig (e.g. SIGSTOP, SIGCONT) to the running process.
func (p *Process) Signal(sig os.Signal) {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(sig)
	}
}

func need(tb testing.TB, bin string) {
	tb.Helper()
	if _, err := exec.LookPath(bin); err != nil {
		unavailable(tb, bin, "PATH", err)
	}
}

// OwnRedis starts a private redis-server (no persistence) and returns it
// with its address.
func OwnRedis(tb testing.TB) (*Process, string) {
	tb.Helper()
	need(tb, "redis-server")
	port := strconv.Itoa(FreePort(tb))
	addr := "127.0.0.1:" + port
	p := &Process{tb: tb, name: "redis-server", dir: tb.TempDir(),
		args: []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning"},
		ready: func() bool {
			c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
			if err == nil {
				_ = c.Close()
			}
			return err == nil
		}}
	p.Start()
	tb.Cleanup(p.Kill)
	return p, addr
}

// OwnClickHouse starts a private clickhouse-server whose data survives
// Kill and Start, and returns it with its HTTP URL.
func OwnClickHouse(tb testing.TB) (*Process, string) {
	tb.Helper()
	need(tb, "clickhouse-server")
	dir := tb.TempDir()
	httpPort, tcpPort, interPort := FreePort(tb), FreePort(tb), FreePort(tb)
	url := "http://127.0.0.1:" + strconv.Itoa(httpPort)
	for _, d := range []string{"tmp", "user_files", "format_schemas"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	client := http.Client{Transport: Transport, Timeout: 500 * time.Millisecond}
	p := &Process{tb: tb, name: "clickhouse-server", dir: dir, env: clickHouseEnv(),
		args: []string{"--config-file=/etc/clickhouse-server/config.xml", "--",
			"--listen_host=127.0.0.1",
			"--http_port=" + strconv.Itoa(httpPort), "--tcp_port=" + strconv.Itoa(tcpPort),
			"--interserver_http_port=" + strconv.Itoa(interPort),
			"--path=" + dir + "/", "--tmp_path=" + dir + "/tmp/",
			"--user_files_path=" + dir + "/user_files/", "--format_schema_path=" + dir + "/format_schemas/",
			"--logger.log=" + dir + "/server.log", "--logger.errorlog=" + dir + "/error.log"},
		ready: func() bool {
			resp, err := client.Get(url + "/ping")
			if err == nil {
				_ = resp.Body.Close()
			}
			return err == nil && resp.StatusCode == http.StatusOK
		}}
	p.Start()
	tb.Cleanup(p.Kill)
	return p, url
}
