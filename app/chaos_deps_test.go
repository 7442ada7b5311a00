package app

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// load sends streamed requests from workers until stop is set or each has
// sent max; it counts what happened.
type load struct {
	sent, answered, fivexx, other atomic.Int64
	mu                            sync.Mutex
	ids                           map[string]bool // X-Request-Id of every whole answer
	stop                          atomic.Bool
	wg                            sync.WaitGroup
}

func startLoad(t *testing.T, r *relay, workers, max int, pace time.Duration, hdr map[string]string) *load {
	l := &load{ids: map[string]bool{}}
	for w := 0; w < workers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; i < max && !l.stop.Load(); i++ {
				l.sent.Add(1)
				resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true}`, hdr)
				body := readAll(t, resp)
				switch {
				case resp.StatusCode == 200 && strings.Contains(body, "[DONE]"):
					l.answered.Add(1)
					l.mu.Lock()
					l.ids[resp.Header.Get("X-Request-Id")] = true
					l.mu.Unlock()
				case resp.StatusCode >= 500:
					l.fivexx.Add(1)
				default:
					l.other.Add(1)
				}
				time.Sleep(pace)
			}
		}()
	}
	return l
}

func (l *load) finish() {
	l.stop.Store(true)
	l.wg.Wait()
}

// chRows waits until ClickHouse holds at least want rows in db (or 60s
// pass) and returns rows per request_id.
func chRows(t *testing.T, url, db string, want int) map[string]int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rows, err := servicetest.TryQuery(url, db, "SELECT request_id FROM stream_logs")
		if err == nil && (len(rows) >= want || time.Now().After(deadline)) {
			got := map[string]int{}
			for _, row := range rows {
				got[row["request_id"].(string)]++
			}
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("clickhouse: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// exactlyOnce counts ids missing from got and ids stored more than once.
func exactlyOnce(ids map[string]bool, got map[string]int) (missing, dup int64) {
	for id := range ids {
		switch n := got[id]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	return missing, dup
}

// drainAndCount waits until the relay's spool is replayed (the replayer
// backs off while inserts fail; a stop would keep the files for the next
// start, which is correct but not what these tests check), stops the relay
// and counts the load's requests in ClickHouse.
func drainAndCount(t *testing.T, r *relay, url, db string, l *load) (st chlog.Stats, got map[string]int, missing, dup int64) {
	t.Helper()
	store := r.app.store
	waitFor(t, 60*time.Second, func() bool { return store.Stats().SpoolFiles == 0 }, "spool not replayed into ClickHouse")
	r.stop(t)
	got = chRows(t, url, db, int(l.answered.Load()))
	missing, dup = exactlyOnce(l.ids, got)
	return store.Stats(), got, missing, dup
}

// TestChaosClickHouseOutage: a private ClickHouse is stopped for a while
// under load (10s under make chaos, 4s by default) and restarted; then the
// table is dropped under load (inserts fail, rows spool) and recreated.
// Every answered request is stored exactly once, nothing is dropped.
func TestChaosClickHouseOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	outage := 4 * time.Second
	if chaosLong() {
		outage = 10 * time.Second
	}
	ch, url := servicetest.OwnClickHouse(t)
	db := "relay"
	r := startRelayWith(t, "", func(c *Config) {
		withClickHouse(url, db)(c)
		c.Storage.ClickHouse.FlushInterval = 100 * time.Millisecond
		c.Storage.ClickHouse.BatchRows = 50
	})
	hdr := map[string]string{mockllm.HeaderChunks: "5", mockllm.HeaderDelayMs: "2"}

	// Phase 1: the server is stopped (SIGKILL) and restarted.
	l := startLoad(t, r, 4, 100000, 5*time.Millisecond, hdr)
	time.Sleep(time.Second)
	ch.Kill()
	time.Sleep(outage)
	ch.Start()
	time.Sleep(time.Second)
	l.finish()
	st1 := r.app.store.Stats()
	got := chRows(t, url, db, int(l.answered.Load()))
	missing, dup := exactlyOnce(l.ids, got)
	res := chaosResult{scenario: fmt.Sprintf("clickhouse/stopped-%s", outage), sent: l.sent.Load(), answered: l.answered.Load(),
		unexpect: l.fivexx.Load() + l.other.Load() + missing + dup, stored: int64(len(got)), spooled: st1.RowsSpooled, dropped: st1.RowsDropped}
	if res.unexpect != 0 || st1.RowsDropped != 0 || int64(len(got)) != l.answered.Load() {
		t.Errorf("ClickHouse stopped: %+v; missing %d, duplicated %d, stats %+v", res, missing, dup, st1)
	}
	if st1.RowsSpooled == 0 {
		t.Errorf("no row was spooled during a %v outage: %+v", outage, st1)
	}
	res.emit(t)

	// Phase 2: the table disappears under load (inserts fail with an
	// exception) and the relay makes it again (its replayer, as at start).
	// The load starts after the drop: rows inserted before it would go
	// with the table.
	servicetest.Exec(t, url, "DROP TABLE "+db+".stream_logs")
	l2 := startLoad(t, r, 4, 100000, 5*time.Millisecond, hdr)
	time.Sleep(3 * time.Second)
	l2.finish()
	st2, got, missing, dup := drainAndCount(t, r, url, db, l2)
	res = chaosResult{scenario: "clickhouse/table-dropped", sent: l2.sent.Load(), answered: l2.answered.Load(),
		unexpect: l2.fivexx.Load() + l2.other.Load() + missing + dup, stored: int64(len(got)),
		spooled: st2.RowsSpooled - st1.RowsSpooled, dropped: st2.RowsDropped - st1.RowsDropped}
	// Rows of phase 1 went with the dropped table; only phase 2's count.
	if res.unexpect != 0 || res.dropped != 0 || int64(len(got)) != l2.answered.Load() {
		t.Errorf("table dropped: %+v; missing %d, duplicated %d, stats %+v", res, missing, dup, st2)
	}
	if st2.InsertErrors == st1.InsertErrors {
		t.Errorf("no insert failed while the table was gone: %+v", st2)
	}
	res.emit(t)
}

// TestChaosSpoolCap: ClickHouse unreachable and a small spool_max_bytes:
// the oldest spool files go past the cap and their rows are counted as
// dropped (and logged), never silently lost: rows answered = rows spooled
// = rows dropped + rows still in the spool.
func TestChaosSpoolCap(t *testing.T) {
	spool := t.TempDir()
	r := startRelayWith(t, "", func(c *Config) {
		c.Storage.SpoolDir = spool
		c.Storage.ClickHouse.URL = "http://127.0.0.1:1" // refused at once
		c.Storage.ClickHouse.FlushInterval = 50 * time.Millisecond
		c.Storage.ClickHouse.BatchRows = 20
		c.Storage.ClickHouse.SpoolMaxBytes = 256 << 10
	})
	l := startLoad(t, r, 4, 150, 0, map[string]string{mockllm.HeaderChunks: "20"})
	l.wg.Wait()
	store := r.app.store
	// Close spools the last block, which may push the oldest file over
	// the cap: rows lost at exit, which Shutdown reports.
	r.stopAllowing(t, "rows dropped: spool over spool_max_bytes")
	st := store.Stats()
	var inSpool, spoolBytes int64
	ents, _ := os.ReadDir(spool)
	for _, e := range ents {
		if p := strings.Split(strings.TrimSuffix(e.Name(), ".native"), "-"); len(p) == 5 && strings.HasSuffix(e.Name(), ".native") {
			var n int64
			fmt.Sscan(p[1], &n)
			inSpool += n
			if fi, err := e.Info(); err == nil {
				spoolBytes += fi.Size()
			}
		}
	}
	res := chaosResult{scenario: "clickhouse/spool-cap-256KiB", sent: l.sent.Load(), answered: l.answered.Load(),
		expected: st.RowsDropped, unexpect: l.fivexx.Load() + l.other.Load(), stored: 0, spooled: st.RowsSpooled, dropped: st.RowsDropped}
	if res.unexpect != 0 || st.RowsDropped == 0 || st.RowsSpooled != l.answered.Load() || st.RowsDropped+inSpool != st.RowsSpooled || spoolBytes > 256<<10 {
		t.Errorf("spool cap: %+v; %d rows (%d bytes) left in the spool, stats %+v", res, inSpool, spoolBytes, st)
		res.unexpect++
	}
	t.Logf("spool cap: answered %d, spooled %d, dropped %d, left %d rows in %d bytes", l.answered.Load(), st.RowsSpooled, st.RowsDropped, inSpool, spoolBytes)
	res.emit(t)
}

// TestChaosRedisFailures: Redis paused (SIGSTOP), killed, restarted empty,
// under load: no request fails (decisions fall back to local buckets).
func TestChaosRedisFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	redis, addr := servicetest.OwnRedis(t)
	mutate, _ := withLimits(addr, 1000000, 1000000)
	r := startRelayWith(t, "", mutate)
	hdr := map[string]string{mockllm.HeaderChunks: "2"}
	steps := []struct {
		name string
		do   func()
	}{
		{"sigstop-2s", func() {
			redis.Signal(syscall.SIGSTOP)
			time.Sleep(2 * time.Second)
			redis.Signal(syscall.SIGCONT)
		}},
		{"killed-2s", func() {
			redis.Kill()
			time.Sleep(2 * time.Second)
			redis.Start()
		}},
		{"restarted-empty", func() {
			redis.Kill()
			redis.Start()
		}},
	}
	for _, s := range steps {
		before := r.rows.count(nil) // the sink keeps the rows of the steps before
		l := startLoad(t, r, 4, 100000, 2*time.Millisecond, hdr)
		time.Sleep(500 * time.Millisecond)
		s.do()
		time.Sleep(time.Second)
		l.finish()
		st := r.app.limiter.Stats()
		stored := stepRows(r, before, l.sent.Load(), 30*time.Second)
		res := sinkOnly(chaosResult{scenario: "redis/" + s.name, sent: l.sent.Load(), answered: l.answered.Load(),
			unexpect: l.fivexx.Load() + l.other.Load(), stored: stored})
		if stored != res.sent {
			res.unexpect++
		}
		if res.unexpect != 0 {
			t.Errorf("%s: %+v, %d rows for %d requests (limiter %+v)", s.name, res, stored, res.sent, st)
		}
		t.Logf("%s: sent %d answered %d; limiter to fallback %d, back to redis %d", s.name, res.sent, res.answered, st.ToFallback, st.ToRedis)
		res.emit(t)
	}
	waitFor(t, 10*time.Second, func() bool {
		l := startLoad(t, r, 1, 1, 0, hdr)
		l.wg.Wait()
		return r.app.limiter.Stats().ToRedis >= r.app.limiter.Stats().ToFallback
	}, "limiter did not return to Redis")
}

// stepRows waits up to d until the sink holds want rows more than before
// (a request's row is written as it ends on the relay, which may be just
// after its client read the end) and returns how many more it holds.
func stepRows(r *relay, before, want int64, d time.Duration) int64 {
	for deadline := time.Now().Add(d); r.rows.count(nil)-before < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	return r.rows.count(nil) - before
}

// relayProc is the relay binary running as a subprocess.
type relayProc struct {
	cmd    *execCmd
	base   string
	stderr *servicetest.Buffer
}

// TestChaosSIGTERMUnderLoad: the relay binary gets SIGTERM while streams
// are in flight: they finish whole, it exits 0, and every answered request
// has its row in ClickHouse.
func TestChaosSIGTERMUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary")
	}
	url := servicetest.ClickHouse(t)
	db := testDatabase(t, url)
	admin := fmt.Sprintf("http://127.0.0.1:%d", servicetest.FreePort(t))
	p := startRelayProc(t, "", fmt.Sprintf("metrics:\n  addr: %s\nstorage:\n  clickhouse:\n    url: %s\n    database: %s\n    flush_interval: 1s\n",
		strings.TrimPrefix(admin, "http://"), url, db))
	var (
		sent, answered, cut, refused atomic.Int64
		mu                           sync.Mutex
		ids                          = map[string]bool{}
		wg                           sync.WaitGroup
	)
	// 8 workers, each stream 20 chunks 50ms apart (~1s).
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				sent.Add(1)
				status, id, body, err := p.stream(t, map[string]string{mockllm.HeaderChunks: "20", mockllm.HeaderDelayMs: "50"})
				switch {
				case err == nil && status == 200 && strings.Contains(body, "[DONE]"):
					answered.Add(1)
					mu.Lock()
					ids[id] = true
					mu.Unlock()
				case status == 0 && body == "":
					refused.Add(1) // connection refused: the listener is closed
					return
				case status == 503:
					refused.Add(1)
				default:
					cut.Add(1)
					t.Logf("cut: status %d err %v body %.100q", status, err, body)
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if status := getStatus(admin + "/readyz"); status != 200 {
		t.Errorf("admin /readyz before SIGTERM: %d", status)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Through the drain the admin listener tells probes the relay is alive
	// and takes no traffic (the relay's port no longer accepts).
	var health, ready int
	for i := 0; i < 500 && ready != 503; i++ {
		health, ready = getStatus(admin+"/healthz"), getStatus(admin+"/readyz")
		time.Sleep(10 * time.Millisecond)
	}
	if health != 200 || ready != 503 {
		t.Errorf("admin during the drain: /healthz %d, /readyz %d", health, ready)
	}
	code := p.wait(t, 60*time.Second)
	wg.Wait()
	got := chRows(t, url, db, int(answered.Load()))
	missing, dup := exactlyOnce(ids, got)
	res := chaosResult{scenario: "relay/sigterm-under-load", sent: sent.Load(), answered: answered.Load(), expected: refused.Load(),
		unexpect: cut.Load() + missing + dup, stored: int64(len(got)), spooledNA: true, droppedNA: true}
	if code != 0 || res.unexpect != 0 {
		t.Errorf("SIGTERM: exit %d, %+v; missing %d duplicated %d\n%s", code, res, missing, dup, p.stderr.String())
		if code != 0 {
			res.unexpect++
		}
	}
	res.emit(t)
}

// getStatus returns the status of a GET of u, 0 when it failed.
func getStatus(u string) int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestChaosKill9WAL: kill -9 under load with durability wal; the relay
// restarted on the same spool dir stores every request that got its full
// response before the kill exactly once.
func TestChaosKill9WAL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary")
	}
	url := servicetest.ClickHouse(t)
	db := testDatabase(t, url)
	spool := t.TempDir()
	storage := fmt.Sprintf("storage:\n  spool_dir: %s\n  clickhouse:\n    url: %s\n    database: %s\n    flush_interval: 2s\n    durability: wal\n", spool, url, db)
	p := startRelayProc(t, spool, storage)
	var (
		sent, answered atomic.Int64
		mu             sync.Mutex
		ids            = map[string]bool{}
		wg             sync.WaitGroup
		stop           atomic.Bool
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000 && !stop.Load(); i++ {
				sent.Add(1)
				status, id, body, err := p.stream(t, map[string]string{mockllm.HeaderChunks: "5", mockllm.HeaderDelayMs: "5"})
				if err == nil && status == 200 && strings.HasSuffix(body, "data: [DONE]\n\n") {
					mu.Lock()
					ids[id] = true
					mu.Unlock()
					answered.Add(1)
				}
			}
		}()
	}
	time.Sleep(3 * time.Second) // past one flush: some rows sent, some only in the WAL
	_ = p.cmd.Process.Kill()
	p.wait(t, 10*time.Second)
	stop.Store(true)
	wg.Wait()
	// Restart on the same spool dir: the WAL is replayed.
	p2 := startRelayProc(t, spool, storage)
	got := chRows(t, url, db, int(answered.Load()))
	_ = p2.cmd.Process.Signal(syscall.SIGTERM)
	p2.wait(t, 30*time.Second)
	got = chRows(t, url, db, int(answered.Load()))
	missing, dup := exactlyOnce(ids, got)
	var extra int64 // rows of requests cut by the kill (finished on the relay side, not whole at the client): allowed, once
	for id, n := range got {
		if !ids[id] && n > 1 {
			dup++
		}
		if !ids[id] {
			extra++
		}
	}
	res := chaosResult{scenario: "relay/kill-9-wal", sent: sent.Load(), answered: answered.Load(), expected: sent.Load() - answered.Load(),
		unexpect: missing + dup, stored: int64(len(got)), spooledNA: true, droppedNA: true}
	if res.unexpect != 0 {
		t.Errorf("kill -9 with wal: %+v: %d answered requests missing, %d stored twice\n%s", res, missing, dup, p.stderr.String())
	}
	t.Logf("kill -9: answered %d, stored %d (%d more: requests cut by the kill whose row was already durable)", answered.Load(), len(got), extra)
	res.emit(t)
}

// startRelayProc builds and starts the relay binary in front of an
// in-process mock, with storage (a YAML "storage:" section) appended to its
// config, and waits until it answers.
func startRelayProc(t *testing.T, dir string, storage string) *relayProc {
	t.Helper()
	bin := relayBinary(t)
	mock, mockBase, err := mockllm.Listen("127.0.0.1:0", mockllm.Options{RequireKey: providerKey, StallTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mock.Close() })
	if dir == "" {
		dir = t.TempDir()
	}
	port := servicetest.FreePort(t)
	cfg := fmt.Sprintf(`server:
  host: 127.0.0.1
  port: %d
  shutdown_grace: 10s
  read_timeout: 5s
auth:
  keys:
    - key: %s
      tenant: test-tenant
routes:
  - name: openai
    path: /v1/chat/completions
    upstream: %s
    auth_env: TEST_PROVIDER_KEY
rate_limit:
  disabled: true
log:
  level: debug
`, port, relayKey, mockBase)
	if !strings.Contains(storage, "spool_dir") {
		storage = strings.Replace(storage, "storage:\n", "storage:\n  spool_dir: "+filepath.Join(dir, "spool")+"\n", 1)
	}
	path := filepath.Join(t.TempDir(), "relay.yaml")
	if err := os.WriteFile(path, []byte(cfg+storage), 0o600); err != nil {
		t.Fatal(err)
	}
	return runRelayProc(t, bin, path, port)
}

// runRelayProc starts the relay binary bin with the config at path
// (listening on port), with the test provider key and extra environment,
// and waits until it answers /healthz; it is killed at the test's end.
func runRelayProc(t *testing.T, bin, path string, port int, env ...string) *relayProc {
	t.Helper()
	cmd := exec.Command(bin, "-config", path, "-env-file", "/nonexistent")
	cmd.Env = append(append(os.Environ(), "TEST_PROVIDER_KEY="+providerKey), env...)
	p := &relayProc{cmd: cmd, base: fmt.Sprintf("http://127.0.0.1:%d", port), stderr: &servicetest.Buffer{}}
	cmd.Stdout, cmd.Stderr = p.stderr, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	c := http.Client{Timeout: time.Second}
	for i := 0; ; i++ {
		resp, err := c.Get(p.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 200 {
			t.Fatalf("relay did not come up: %v\n%s", err, p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

var procClient = &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16}, Timeout: 60 * time.Second}

// stream sends one streamed request; status 0 means no answer at all.
func (p *relayProc) stream(t *testing.T, hdr map[string]string) (status int, id, body string, err error) {
	req, _ := http.NewRequest(http.MethodPost, p.base+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true}`))
	req.Header.Set("Authorization", "Bearer "+relayKey)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := procClient.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Request-Id"), string(b), err
}

// wait waits for the process to exit and returns its exit code (-1 when
// killed by a signal); past d it kills it and fails.
func (p *relayProc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-done
		t.Errorf("relay did not exit within %v\n%s", d, p.stderr.String())
	}
	return p.cmd.ProcessState.ExitCode()
}

type execCmd = exec.Cmd

// TestChaosClickHousePaused: a private ClickHouse is frozen (SIGSTOP) under
// load for longer than the insert timeout, so inserts end with an unknown
// outcome (the server may still apply them when it wakes); those blocks are
// spooled marked unknown and checked against the table before they are
// re-sent. Every answered request is stored exactly once.
func TestChaosClickHousePaused(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	ch, url := servicetest.OwnClickHouse(t)
	db := "relay"
	r := startRelayWith(t, "", func(c *Config) {
		withClickHouse(url, db)(c)
		c.Storage.ClickHouse.FlushInterval = 100 * time.Millisecond
		c.Storage.ClickHouse.BatchRows = 50
		c.Storage.ClickHouse.InsertTimeout = time.Second
	})
	hdr := map[string]string{mockllm.HeaderChunks: "5", mockllm.HeaderDelayMs: "2"}
	l := startLoad(t, r, 4, 100000, 5*time.Millisecond, hdr)
	time.Sleep(time.Second)
	ch.Signal(syscall.SIGSTOP)
	time.Sleep(3 * time.Second)
	ch.Signal(syscall.SIGCONT)
	time.Sleep(time.Second)
	l.finish()
	st, got, missing, dup := drainAndCount(t, r, url, db, l)
	res := chaosResult{scenario: "clickhouse/paused-3s", sent: l.sent.Load(), answered: l.answered.Load(),
		unexpect: l.fivexx.Load() + l.other.Load() + missing + dup, stored: int64(len(got)), spooled: st.RowsSpooled, dropped: st.RowsDropped}
	if res.unexpect != 0 || st.RowsDropped != 0 || int64(len(got)) != l.answered.Load() {
		t.Errorf("ClickHouse paused: %+v; missing %d, duplicated %d, stats %+v", res, missing, dup, st)
	}
	res.emit(t)
}
