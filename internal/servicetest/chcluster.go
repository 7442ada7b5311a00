package servicetest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ClickHouseClusterName is the cluster's name in remote_servers.
const ClickHouseClusterName = "relay_cluster"

// Settings of the test cluster that keep failures short (the defaults
// would stall a test suite: see ../shared/notes/cluster.md).
const (
	// chZooKeeperSessionMs is ClickHouse's ZooKeeper session timeout: a
	// replica restarted after kill -9 waits this long for its old session.
	chZooKeeperSessionMs = 5000
	// chDDLTaskTimeout (seconds) bounds ON CLUSTER DDL with a node down.
	chDDLTaskTimeout = 10
)

// CHCluster is a ClickHouse 18.16 cluster of four servers (two shards of
// two replicas, named "relay_cluster" in remote_servers, macros shard and
// replica, distributed_ddl) over one ZooKeeper, all on free loopback ports
// with scratch data directories. ClickHouseCluster starts it once per test
// process; StopClickHouseCluster (from TestMain) stops it.
//
// Node i is URLs[i]: 0 = shard 01 replica r1, 1 = shard 01 replica r2,
// 2 = shard 02 replica r1, 3 = shard 02 replica r2.
type CHCluster struct {
	// URLs are the HTTP base URLs of the nodes in the order s1r1, s1r2,
	// s2r1, s2r2.
	URLs []string
	// Name is the cluster's name in remote_servers ("relay_cluster").
	Name string

	mu    sync.Mutex // serialises Kill, Start, StopZooKeeper, StartZooKeeper, stop
	tb    testing.TB // the test that asked for the cluster last: failures go there
	dir   string
	zk    *zooKeeper
	nodes []*chNode
}

// chNode is one clickhouse-server of the cluster.
type chNode struct {
	dir                       string
	http, tcp, inter          int
	shard, replica, configXML string
	proc                      *child
}

var (
	clusterMu  sync.Mutex
	clusterCur *CHCluster
	clusterErr error // a start that failed is not tried again
)

// ClickHouseCluster returns the test process's ClickHouse cluster,
// starting ZooKeeper and the four servers on the first call (about 1 s),
// and restarting any of them a test left stopped on later calls.
// Without clickhouse-server, java or ZooKeeper's jar the test fails when CI
// is set and is skipped otherwise. Every node answers /ping and has no
// read-only replicated table when it returns.
func ClickHouseCluster(tb testing.TB) *CHCluster {
	tb.Helper()
	clusterMu.Lock()
	defer clusterMu.Unlock()
	if c := clusterCur; c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.tb = tb
		// A test that failed half-way may have left a server stopped.
		if c.zk.proc == nil {
			if err := c.zk.start(); err != nil {
				tb.Fatalf("clickhouse cluster: %v", err)
			}
		}
		for i, n := range c.nodes {
			if n.proc == nil || n.proc.exited() {
				if err := c.startNode(i); err != nil {
					tb.Fatalf("clickhouse cluster: %v", err)
				}
			}
		}
		return c
	}
	if _, err := exec.LookPath("clickhouse-server"); err != nil {
		unavailable(tb, "clickhouse-server", "PATH", err)
		return nil
	}
	if err := zooKeeperAvailable(); err != nil {
		unavailable(tb, "zookeeper", zooKeeperJar, err)
		return nil
	}
	if clusterErr != nil {
		tb.Fatalf("clickhouse cluster: an earlier start failed: %v", clusterErr)
	}
	c, err := startCluster(tb)
	for try := 1; try < 3 && errors.Is(err, errPortTaken); try++ {
		c, err = startCluster(tb) // new ports
	}
	if err != nil {
		clusterErr = err
		tb.Fatalf("clickhouse cluster: %v", err)
	}
	clusterCur = c
	return c
}

// StopClickHouseCluster stops the cluster if one was started: the
// ClickHouse servers first (SIGTERM, so they close their ZooKeeper sessions),
// then ZooKeeper, and removes the scratch directory (kept, with the
// servers' logs, when RELAY_TEST_KEEP_CLUSTER is set). Call it from TestMain
// after m.Run in every package that uses ClickHouseCluster.
func StopClickHouseCluster() {
	clusterMu.Lock()
	defer clusterMu.Unlock()
	if clusterCur == nil {
		return
	}
	clusterCur.stop()
	clusterCur = nil
}

func startCluster(tb testing.TB) (*CHCluster, error) {
	dir, err := os.MkdirTemp("", "relay-chcluster-")
	if err != nil {
		return nil, err
	}
	c := &CHCluster{Name: ClickHouseClusterName, tb: tb, dir: dir}
	ok := false
	defer func() {
		if !ok {
			c.stop()
		}
	}()
	if c.zk, err = newZooKeeper(dir, FreePort(tb)); err != nil {
		return nil, err
	}
	for i, sr := range [][2]string{{"01", "r1"}, {"01", "r2"}, {"02", "r1"}, {"02", "r2"}} {
		n := &chNode{dir: filepath.Join(dir, "ch"+strconv.Itoa(i+1)), shard: sr[0], replica: sr[1],
			http: FreePort(tb), tcp: FreePort(tb), inter: FreePort(tb)}
		c.nodes = append(c.nodes, n)
		c.URLs = append(c.URLs, "http://127.0.0.1:"+strconv.Itoa(n.http))
	}
	if err := c.writeConfigs(); err != nil {
		return nil, err
	}
	if err := c.zk.start(); err != nil {
		return nil, err
	}
	errs := make(chan error, len(c.nodes))
	for i := range c.nodes {
		go func() { errs <- c.startNode(i) }()
	}
	for range c.nodes {
		if e := <-errs; e != nil && (err == nil || errors.Is(e, errPortTaken)) {
			err = e
		}
	}
	if err != nil {
		return nil, err
	}
	if err := c.settle(); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// settle runs one ON CLUSTER statement (a no-op DROP) until every node's
// DDL worker executed it and every node still runs, restarting a node that
// died meanwhile. 18.16's DDL worker can crash its server right after
// start when its first ZooKeeper session is slow (segmentation fault in
// zkutil::ZooKeeper::createImpl, seen under CI's load in the first cluster
// test); once it has executed a statement, the session is up.
func (c *CHCluster) settle() error {
	const rounds = 5
	var err error
	for round := 1; round <= rounds; round++ {
		q := url.Values{"distributed_ddl_task_timeout": {"30"}, "wait_end_of_query": {"1"}}
		err = postWithTimeout(c.URLs[0]+"/?"+q.Encode(), "DROP DATABASE IF EXISTS servicetest_settle ON CLUSTER "+c.Name, 40*time.Second)
		if err != nil {
			// A server that crashed closes its ports before its process
			// is reaped: wait for that, or the round would not see it.
			c.awaitDying(10 * time.Second)
		}
		died := false
		for i, n := range c.nodes {
			if n.proc != nil && !n.proc.exited() {
				continue
			}
			died = true
			c.tb.Logf("clickhouse cluster: node %d exited after start; starting it again; its log ends: %s", i, logTail(filepath.Join(n.dir, "error.log"), 1500))
			if serr := c.startNode(i); serr != nil {
				return serr
			}
		}
		if err == nil && !died {
			return nil
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("nodes not settled after %d rounds: %v", rounds, err)
}

// awaitDying waits up to d until every node whose HTTP port is closed has
// exited, so that the caller finds it dead rather than running.
func (c *CHCluster) awaitDying(d time.Duration) {
	deadline := time.Now().Add(d)
	for _, n := range c.nodes {
		for n.proc != nil && !n.proc.exited() && !portOpen(n.http) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Kill kills node i with SIGKILL, like a crash, and returns once the
// process is gone (reaped, its ports closed). Its data stays for Start.
func (c *CHCluster) Kill(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[i]
	if n.proc == nil {
		return
	}
	n.proc.kill()
	n.proc = nil
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && portOpen(n.http) {
		time.Sleep(20 * time.Millisecond)
	}
}

// Start restarts node i with the same data and waits until it answers
// /ping and none of its replicated tables is read-only (measured: 0.1 to
// 0.7 s after a kill -9). The replica then catches up by itself; see
// SyncReplicas. It does nothing for a running node.
func (c *CHCluster) Start(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.startNode(i); err != nil {
		c.tb.Fatalf("clickhouse cluster: %v", err)
	}
}

// StopZooKeeper kills ZooKeeper (SIGKILL) and waits until it is gone.
// Replicated tables turn read-only; reads keep working.
func (c *CHCluster) StopZooKeeper() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.zk.stop()
}

// StartZooKeeper restarts ZooKeeper with its data and waits until it
// answers. The servers reconnect by themselves (tables writable again
// about a session timeout later); it does not wait for that.
func (c *CHCluster) StartZooKeeper() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.zk.start(); err != nil {
		c.tb.Fatalf("clickhouse cluster: %v", err)
	}
}

// ZooKeeperAddr is ZooKeeper's client address (127.0.0.1:port).
func (c *CHCluster) ZooKeeperAddr() string {
	return "127.0.0.1:" + strconv.Itoa(c.zk.port)
}

// DeleteZooKeeperPath removes a ZooKeeper node and its children behind the
// servers' backs (to make the state a lost connection leaves, say).
func (c *CHCluster) DeleteZooKeeperPath(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.zk.deleteAll(path); err != nil {
		c.tb.Fatalf("clickhouse cluster: %v", err)
	}
}

// WaitWritable waits up to timeout until no running node has a read-only
// replicated table (after StartZooKeeper, say), and reports whether that
// happened.
func (c *CHCluster) WaitWritable(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for _, u := range c.URLs {
		if !waitNoReadonly(u, time.Until(deadline)) {
			return false
		}
	}
	return true
}

// SyncReplicas makes every running node catch up with its replication
// queue (SYSTEM SYNC REPLICA of each replicated table, which also wakes a
// queue that 18.16 would let sleep for 10 s or more after failed fetches)
// and reports whether all did within timeout.
func (c *CHCluster) SyncReplicas(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for _, u := range c.URLs {
		rows, err := TryQuery(u, "", "SELECT database, table FROM system.replicas")
		if err != nil {
			return false
		}
		for _, r := range rows {
			left := time.Until(deadline)
			if left <= 0 {
				return false
			}
			q := "SYSTEM SYNC REPLICA " + fmt.Sprint(r["database"]) + "." + fmt.Sprint(r["table"])
			if err := execWithTimeout(u, q, left); err != nil {
				return false
			}
		}
	}
	return true
}

// execWithTimeout runs a statement on u, the server's wait bounded by d.
func execWithTimeout(u, sql string, d time.Duration) error {
	secs := strconv.Itoa(max(1, int(d.Seconds())))
	return postWithTimeout(u+"/?receive_timeout="+secs+"&send_timeout="+secs, sql, d+time.Second)
}

// postWithTimeout posts sql to u (with its query string) and fails on a
// status other than 200 or after d.
func postWithTimeout(u, sql string, d time.Duration) error {
	c := http.Client{Transport: Transport, Timeout: d}
	resp, err := c.Post(u, "text/plain", strings.NewReader(sql))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", sql, b)
	}
	return nil
}

func (c *CHCluster) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if n.proc != nil {
			wg.Add(1)
			go func(p *child) { defer wg.Done(); p.term(10 * time.Second) }(n.proc)
			n.proc = nil
		}
	}
	wg.Wait()
	if c.zk != nil {
		c.zk.stop()
	}
	if os.Getenv("RELAY_TEST_KEEP_CLUSTER") != "" {
		fmt.Fprintf(os.Stderr, "servicetest: RELAY_TEST_KEEP_CLUSTER is set: the cluster's logs and data stay in %s\n", c.dir)
		return
	}
	_ = os.RemoveAll(c.dir)
}

// startNode starts node i (unless running) and waits until it is ready.
func (c *CHCluster) startNode(i int) error {
	n := c.nodes[i]
	if n.proc != nil && !n.proc.exited() {
		return nil
	}
	p, err := startChild(n.dir, clickHouseEnv(), "clickhouse-server", "--config-file="+n.configXML)
	if err != nil {
		return err
	}
	n.proc = p
	hc := http.Client{Transport: Transport, Timeout: time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if resp, err := hc.Get(c.URLs[i] + "/ping"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if p.exited() {
			n.proc = nil
			return startFailure(i, c.URLs[i], filepath.Join(n.dir, "error.log"))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %d (%s) did not answer /ping within 60s; see %s", i, c.URLs[i], filepath.Join(n.dir, "error.log"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The answer may come from another process's server that took the
	// port first (test packages start clusters at the same time): the
	// launch macro says whose it is.
	rows, err := TryQuery(c.URLs[i], "", "SELECT substitution AS l FROM system.macros WHERE macro = 'launch'")
	if err != nil || len(rows) != 1 || fmt.Sprint(rows[0]["l"]) != n.dir {
		p.kill()
		n.proc = nil
		return fmt.Errorf("node %d (%s): %w (answer %v, %v)", i, c.URLs[i], errPortTaken, rows, err)
	}
	if !waitNoReadonly(c.URLs[i], 30*time.Second) {
		return fmt.Errorf("node %d (%s): replicated tables still read-only after 30s", i, c.URLs[i])
	}
	return nil
}

// errPortTaken: a node's port answered for another server.
var errPortTaken = errors.New("its port is served by another process")

// startFailure explains why node i exited at start, from the end of its
// error log (the scratch directory holding it is removed when the start
// fails). A port another process bound first (test packages start
// clusters at the same time) is errPortTaken, so the caller retries with
// new ports.
func startFailure(i int, url, errorLog string) error {
	tail := logTail(errorLog, 2000)
	if strings.Contains(tail, "Address already in use") {
		return fmt.Errorf("node %d (%s) exited at start: %w; log: %s", i, url, errPortTaken, tail)
	}
	return fmt.Errorf("node %d (%s) exited at start; log: %s", i, url, tail)
}

// logTail returns the last n bytes of a log file, trimmed.
func logTail(path string, n int) string {
	text, _ := os.ReadFile(path)
	if len(text) > n {
		text = text[len(text)-n:]
	}
	return strings.TrimSpace(string(text))
}

// waitNoReadonly waits until the server at u has no read-only replicated
// table (system.replicas), or timeout passes.
func waitNoReadonly(u string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		rows, err := TryQuery(u, "", "SELECT count() AS n FROM system.replicas WHERE is_readonly OR is_session_expired")
		if err == nil && len(rows) == 1 && fmt.Sprint(rows[0]["n"]) == "0" {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func portOpen(port int) bool {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 100*time.Millisecond)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}

// writeConfigs gives every node its own complete config.xml (18.16
// ignores --include_from) and users.xml.
func (c *CHCluster) writeConfigs() error {
	var shards strings.Builder
	for s := 0; s < 2; s++ {
		shards.WriteString("      <shard><internal_replication>true</internal_replication>\n")
		for r := 0; r < 2; r++ {
			fmt.Fprintf(&shards, "        <replica><host>127.0.0.1</host><port>%d</port></replica>\n", c.nodes[2*s+r].tcp)
		}
		shards.WriteString("      </shard>\n")
	}
	for _, n := range c.nodes {
		for _, d := range []string{"data", "tmp", "user_files", "format_schemas"} {
			if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
				return err
			}
		}
		n.configXML = filepath.Join(n.dir, "config.xml")
		cfg := fmt.Sprintf(clusterConfigXML, n.dir, n.dir, n.http, n.tcp, n.inter,
			n.dir, n.dir, n.dir, n.dir, filepath.Join(n.dir, "users.xml"),
			c.Name, shards.String(), c.Name, c.zk.port, chZooKeeperSessionMs, n.shard, n.replica, n.dir)
		if err := os.WriteFile(n.configXML, []byte(cfg), 0o644); err != nil {
			return err
		}
		users := fmt.Sprintf(clusterUsersXML, chDDLTaskTimeout)
		if err := os.WriteFile(filepath.Join(n.dir, "users.xml"), []byte(users), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// clusterConfigXML is one node's config.xml: logs, ports, paths, the
// cluster, ZooKeeper, macros and the distributed DDL queue.
const clusterConfigXML = `<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>%s/server.log</log>
    <errorlog>%s/error.log</errorlog>
    <size>100M</size>
    <count>1</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>%d</http_port>
  <tcp_port>%d</tcp_port>
  <interserver_http_port>%d</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <max_concurrent_queries>100</max_concurrent_queries>
  <keep_alive_timeout>3</keep_alive_timeout>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <path>%s/data/</path>
  <tmp_path>%s/tmp/</tmp_path>
  <user_files_path>%s/user_files/</user_files_path>
  <format_schema_path>%s/format_schemas/</format_schema_path>
  <users_config>%s</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <remote_servers>
    <%s>
%s    </%s>
  </remote_servers>
  <zookeeper>
    <node><host>127.0.0.1</host><port>%d</port></node>
    <session_timeout_ms>%d</session_timeout_ms>
    <operation_timeout_ms>3000</operation_timeout_ms>
  </zookeeper>
  <macros><shard>%s</shard><replica>%s</replica><launch>%s</launch></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <merge_tree><zookeeper_session_expiration_check_period>1</zookeeper_session_expiration_check_period></merge_tree>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
</yandex>
`

// clusterUsersXML: the default user without password from loopback, a
// default profile whose timeouts fail fast, and "reader", a readonly=1 user
// (who may change no setting), as operators give the read-back.
const clusterUsersXML = `<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>2000000000</max_memory_usage>
      <load_balancing>random</load_balancing>
      <distributed_ddl_task_timeout>%d</distributed_ddl_task_timeout>
      <insert_quorum_timeout>10000</insert_quorum_timeout>
      <connect_timeout_with_failover_ms>200</connect_timeout_with_failover_ms>
    </default>
    <readonly>
      <readonly>1</readonly>
      <load_balancing>random</load_balancing>
    </readonly>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <reader>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>readonly</profile>
      <quota>default</quota>
    </reader>
  </users>
  <quotas>
    <default>
      <interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval>
    </default>
  </quotas>
</yandex>
`
