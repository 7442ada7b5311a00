package servicetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RCluster is a Redis Cluster of three masters (no replicas) on loopback,
// started by the test process itself: redis-server processes in cluster mode
// in a scratch directory, joined with `redis-cli --cluster create`. One
// cluster serves every test of a package (RedisCluster starts it once);
// StopRedisCluster, called from the package's TestMain, stops it.
//
// Tests that kill nodes must not run in parallel with other tests of the
// cluster. RedisCluster restarts any node a previous test left down and
// waits for cluster_state:ok, so every test starts from a whole cluster.
type RCluster struct {
	// Addrs are the nodes' client addresses, "127.0.0.1:port".
	Addrs []string

	dir   string
	ports []int
	slots [16384]uint8 // node index owning each slot

	mu    sync.Mutex
	procs []*exec.Cmd // nil while killed
	tb    testing.TB  // the test that last asked for the cluster: Restart fails it
}

var (
	redisClusterOnce sync.Once
	redisCluster     *RCluster
	redisClusterErr  error
	redisClusterMiss string // missing binary, for unavailable
)

// RedisCluster returns the package's 3-master Redis Cluster, starting it on
// first use (about 2 s). Without redis-server or redis-cli it fails under CI
// and skips elsewhere.
func RedisCluster(tb testing.TB) *RCluster {
	tb.Helper()
	redisClusterOnce.Do(func() {
		for _, bin := range []string{"redis-server", "redis-cli"} {
			if _, err := exec.LookPath(bin); err != nil {
				redisClusterMiss, redisClusterErr = bin, err
				return
			}
		}
		redisCluster, redisClusterErr = startRedisCluster()
	})
	if redisClusterMiss != "" {
		unavailable(tb, redisClusterMiss, "PATH", redisClusterErr)
		return nil
	}
	if redisClusterErr != nil {
		tb.Fatalf("redis cluster: %v", redisClusterErr)
	}
	c := redisCluster
	c.mu.Lock()
	c.tb = tb
	c.mu.Unlock()
	if err := c.heal(); err != nil {
		tb.Fatalf("redis cluster: %v", err)
	}
	return c
}

// StopRedisCluster kills the cluster's processes and removes its directory.
// TestMain calls it after the package's tests; it does nothing when no test
// started the cluster.
func StopRedisCluster() {
	c := redisCluster
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.procs {
		if p != nil {
			_ = p.Process.Kill()
			_ = p.Wait()
			c.procs[i] = nil
		}
	}
	_ = os.RemoveAll(c.dir)
}

// Seeds returns the nodes' addresses comma-separated: the form
// storage.redis.addr (quota.Options.RedisAddr) takes for a cluster.
func (c *RCluster) Seeds() string { return strings.Join(c.Addrs, ",") }

// Kill stops node i with SIGKILL, like a crash, and waits until the process
// is gone and its port refuses connections. Its data (no persistence) is lost.
func (c *RCluster) Kill(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.procs[i]
	if p == nil {
		return
	}
	_ = p.Process.Kill()
	_ = p.Wait()
	c.procs[i] = nil
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		conn, err := net.DialTimeout("tcp", c.Addrs[i], 100*time.Millisecond)
		if err != nil {
			return
		}
		_ = conn.Close()
	}
}

// Restart starts a killed node i again in its directory (nodes.conf keeps
// its identity and slots) and waits until every node reports
// cluster_state:ok. The node comes back empty. A failure fails the test that
// last called RedisCluster.
func (c *RCluster) Restart(i int) {
	if err := c.restart(i); err != nil {
		c.mu.Lock()
		tb := c.tb
		c.mu.Unlock()
		tb.Fatalf("redis cluster: restart node %d: %v", i, err)
	}
}

func (c *RCluster) restart(i int) error {
	c.mu.Lock()
	if c.procs[i] == nil {
		p, err := c.startNode(i)
		if err != nil {
			c.mu.Unlock()
			return err
		}
		c.procs[i] = p
	}
	c.mu.Unlock()
	return c.waitOK(30 * time.Second)
}

// heal restarts killed nodes and waits for cluster_state:ok.
func (c *RCluster) heal() error {
	for i := range c.Addrs {
		if err := c.restart(i); err != nil {
			return err
		}
	}
	return nil
}

// State returns node i's cluster_state ("ok", "fail"), or "" when it does
// not answer.
func (c *RCluster) State(i int) string {
	info, err := c.Do(i, "CLUSTER", "INFO")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, "cluster_state:"); ok {
			return v
		}
	}
	return ""
}

// NodeForKey returns the index in Addrs of the master that owns key's slot
// (the slot of its {hash tag}, if it has one).
func (c *RCluster) NodeForKey(key string) int {
	return int(c.slots[KeySlot(key)])
}

// Do sends one command to node i and returns its reply as text: simple and
// bulk strings as they are, integers in decimal, arrays one element a line.
// An error reply is returned as an error.
func (c *RCluster) Do(i int, args ...string) (string, error) {
	return redisDo(c.Addrs[i], args...)
}

// KeySlot is the Redis Cluster hash slot of key: CRC16 (XModem) of the key,
// or of its hash tag, modulo 16384.
func KeySlot(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

func startRedisCluster() (*RCluster, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		c, err := tryRedisCluster()
		if err == nil {
			return c, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func tryRedisCluster() (*RCluster, error) {
	dir, err := os.MkdirTemp("", "relay-rediscluster-")
	if err != nil {
		return nil, err
	}
	c := &RCluster{dir: dir, procs: make([]*exec.Cmd, 3)}
	ok := false
	defer func() {
		if !ok {
			redisCluster = c
			StopRedisCluster()
			redisCluster = nil
		}
	}()
	c.ports = clusterPorts(3)
	if len(c.ports) < 3 {
		return nil, errors.New("no free port pairs (port and port+10000) below 30000")
	}
	for i, p := range c.ports {
		c.Addrs = append(c.Addrs, "127.0.0.1:"+strconv.Itoa(p))
		if err := os.MkdirAll(c.nodeDir(i), 0o755); err != nil {
			return nil, err
		}
		if c.procs[i], err = c.startNode(i); err != nil {
			return nil, err
		}
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.waitOK(30 * time.Second); err != nil {
		return nil, err
	}
	if err := c.readSlots(); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

func (c *RCluster) nodeDir(i int) string { return filepath.Join(c.dir, "n"+strconv.Itoa(i)) }

// startNode starts redis-server for node i and waits until it answers PING.
func (c *RCluster) startNode(i int) (*exec.Cmd, error) {
	d := c.nodeDir(i)
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(c.ports[i]), "--bind", "127.0.0.1", "--dir", d,
		"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
		"--save", "", "--appendonly", "no", "--loglevel", "warning", "--logfile", filepath.Join(d, "redis.log"))
	cmd.Dir = d
	// A test binary that dies (panic, timeout) takes its nodes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if r, err := redisDo(c.Addrs[i], "PING"); err == nil && r == "PONG" {
			return cmd, nil
		}
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, fmt.Errorf("redis-server on %s did not answer (log in %s)", c.Addrs[i], d)
}

// waitOK waits until every node reports cluster_state:ok.
func (c *RCluster) waitOK(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		n := 0
		for i := range c.Addrs {
			if c.State(i) == "ok" {
				n++
			}
		}
		if n == len(c.Addrs) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster_state not ok on every node within %v (logs in %s)", within, c.dir)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readSlots fills the slot table from CLUSTER NODES.
func (c *RCluster) readSlots() error {
	out, err := c.Do(0, "CLUSTER", "NODES")
	if err != nil {
		return err
	}
	covered := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 9 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		node := -1
		for i, a := range c.Addrs {
			if a == addr {
				node = i
			}
		}
		if node < 0 {
			return fmt.Errorf("CLUSTER NODES names unknown node %s", addr)
		}
		for _, r := range f[8:] {
			lo, hi, isRange := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if isRange {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 != nil || err2 != nil || a < 0 || b >= len(c.slots) {
				continue // importing/migrating markers
			}
			for s := a; s <= b; s++ {
				c.slots[s] = uint8(node)
				covered++
			}
		}
	}
	if covered != len(c.slots) {
		return fmt.Errorf("CLUSTER NODES covers %d of %d slots", covered, len(c.slots))
	}
	return nil
}

// clusterPorts picks n ports below the kernel's ephemeral range whose bus
// ports (port+10000) are free too.
func clusterPorts(n int) []int {
	var ports []int
	for tries := 0; tries < 200 && len(ports) < n; tries++ {
		p := 20000 + rand.IntN(10000)
		if portFree(p) && portFree(p+10000) && !contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func portFree(p int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

// redisDo is a minimal RESP2 client for one command on a fresh connection.
func redisDo(addr string, args ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return "", err
	}
	return readRESP(bufio.NewReader(conn))
}

func readRESP(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("empty RESP line")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(br, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		parts := make([]string, 0, max(n, 0))
		for j := 0; j < n; j++ {
			s, err := readRESP(br)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected RESP reply %q", line)
}
