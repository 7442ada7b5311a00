package servicetest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// zooKeeperJar is where Debian's zookeeper package puts the server; its
// configuration directory (log4j) goes on the class path too.
const (
	zooKeeperJar     = "/usr/share/java/zookeeper.jar"
	zooKeeperConfDir = "/etc/zookeeper/conf"
	// zooKeeperClassPath serves the server and the command-line client.
	zooKeeperClassPath = zooKeeperConfDir + ":" + zooKeeperJar + ":/usr/share/java/slf4j-simple.jar"
)

// zooKeeper is one standalone ZooKeeper 3.8 server on a loopback port,
// run with java directly (no systemd). Its data directory survives stop
// and start, so the tables' metadata does too.
type zooKeeper struct {
	dir  string
	port int
	proc *child
}

// zooKeeperAvailable returns why ZooKeeper cannot run here, or nil.
func zooKeeperAvailable() error {
	if _, err := exec.LookPath("java"); err != nil {
		return fmt.Errorf("java: %w (apt-get install --no-install-recommends default-jre-headless)", err)
	}
	if _, err := os.Stat(zooKeeperJar); err != nil {
		return fmt.Errorf("%w (apt-get install --no-install-recommends zookeeper)", err)
	}
	return nil
}

// newZooKeeper writes zoo.cfg into dir/zookeeper for a server on port.
func newZooKeeper(dir string, port int) (*zooKeeper, error) {
	z := &zooKeeper{dir: filepath.Join(dir, "zookeeper"), port: port}
	if err := os.MkdirAll(filepath.Join(z.dir, "data"), 0o755); err != nil {
		return nil, err
	}
	// forceSync=no: the data only has to survive a kill of the process
	// (the page cache keeps it), and fsyncs slow a busy test machine.
	cfg := "tickTime=500\n" +
		"minSessionTimeout=1000\n" +
		"maxSessionTimeout=30000\n" +
		"dataDir=" + filepath.Join(z.dir, "data") + "\n" +
		"clientPort=" + strconv.Itoa(port) + "\n" +
		"clientPortAddress=127.0.0.1\n" +
		"admin.enableServer=false\n" +
		"4lw.commands.whitelist=srvr\n" +
		"maxClientCnxns=0\n" +
		"forceSync=no\n"
	if err := os.WriteFile(filepath.Join(z.dir, "zoo.cfg"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return z, nil
}

// start runs the server and waits until it serves requests.
func (z *zooKeeper) start() error {
	if z.proc != nil {
		return nil
	}
	p, err := startChild(z.dir, nil, "java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dzookeeper.log.dir="+z.dir, "-Dzookeeper.root.logger=WARN,CONSOLE",
		"-cp", zooKeeperClassPath,
		"org.apache.zookeeper.server.ZooKeeperServerMain", filepath.Join(z.dir, "zoo.cfg"))
	if err != nil {
		return err
	}
	z.proc = p
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if z.serving() {
			return nil
		}
		if p.exited() {
			z.proc = nil
			return fmt.Errorf("zookeeper exited at start (log in %s)", z.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("zookeeper on port %d did not serve within 60s (log in %s)", z.port, z.dir)
}

// serving asks with the four-letter word srvr whether the server serves
// requests. ruok is not enough: it answers imok as soon as the port is
// bound, before the database is loaded, and a ClickHouse server whose
// first session is refused then may crash (seen: 18.16's DDLWorker,
// segmentation fault). A probe that connects during start-up can hang,
// hence the deadline.
func (z *zooKeeper) serving() bool {
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(z.port), 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("srvr")); err != nil {
		return false
	}
	b, _ := io.ReadAll(bufio.NewReader(c))
	return strings.Contains(string(b), "Mode: standalone")
}

// deleteAll removes path and everything under it with ZooKeeper's own
// command-line client (org.apache.zookeeper.ZooKeeperMain, one command,
// then it exits).
func (z *zooKeeper) deleteAll(path string) error {
	cmd := exec.Command("java", "-Xmx64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dzookeeper.root.logger=WARN,CONSOLE",
		"-cp", zooKeeperClassPath,
		"org.apache.zookeeper.ZooKeeperMain", "-server", "127.0.0.1:"+strconv.Itoa(z.port), "deleteall", path)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("zookeeper deleteall %s: %w: %s", path, err, out)
	}
	return nil
}

// stop kills the server (SIGKILL) and waits until it is reaped.
func (z *zooKeeper) stop() {
	if z.proc == nil {
		return
	}
	z.proc.kill()
	z.proc = nil
}

// child is a server process started by this package. A goroutine reaps it,
// so that once kill returns the process is gone, not a zombie whose ports
// and files may still look taken.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// startChild starts name with args in dir and environment env (nil: the
// test's own), its output appended to dir/process.log. The child gets
// SIGKILL when the test process dies, so that a crashed test run leaves no
// servers behind.
func startChild(dir string, env []string, name string, args ...string) (*child, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	logf, err := os.OpenFile(filepath.Join(dir, "process.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits until the process is reaped (at most 30s).
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
	}
}

// term sends SIGTERM and waits up to grace for the exit, then kills.
func (c *child) term(grace time.Duration) {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.kill()
	}
}
