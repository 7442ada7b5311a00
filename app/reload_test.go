package app

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

const secondKey = "sk-relay-added-on-reload"

// reloadConfig is a config file: one route to base, the relay key, a second
// key when added, and the tenant's rate limit.
func reloadConfig(base, spool string, added bool, limit int, extraRoute string) string {
	keys := "    - key: " + relayKey + "\n      tenant: test-tenant\n"
	if added {
		keys += "    - key: " + secondKey + "\n      tenant: second\n"
	}
	return `
server:
  host: 127.0.0.1
  shutdown_grace: 5s
auth:
  keys:
` + keys + `
routes:
  - name: openai
    path: /v1/chat/completions
    upstream: ` + base + `
    auth_env: TEST_PROVIDER_KEY
` + extraRoute + `
storage:
  spool_dir: ` + spool + `
rate_limit:
  default: 1000
  tenants: {test-tenant: ` + fmt.Sprint(limit) + `}
log:
  level: error
`
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// startReloadable starts a relay from a config file (reloadConfig: the
// relay key, a limit of 600) in front of a mock and returns it, the mock's
// base URL, the file's path and the spool directory, for the test to
// rewrite the file and reload.
func startReloadable(t *testing.T) (p *poolRelay, base, path, spool string) {
	t.Helper()
	_, base = mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	dir := t.TempDir()
	path, spool = filepath.Join(dir, "relay.yaml"), filepath.Join(dir, "spool")
	writeFile(t, path, reloadConfig(base, spool, false, 600, ""))
	return startFromFile(t, path), base, path, spool
}

// startFromFile starts a relay from the config file at path.
func startFromFile(t *testing.T, path string) *poolRelay {
	t.Helper()
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sink := &poolRows{}
	a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), sink)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{app: a, base: "http://" + ln.Addr().String(), done: make(chan error, 1)}
	go func() { r.done <- a.Serve(ln) }()
	t.Cleanup(func() { r.stop(t) })
	return &poolRelay{relay: r, sink: sink}
}

// ask sends one chat request with key and returns the response, body read.
func ask(t *testing.T, base, path, key string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(chatBody))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestReloadAppliesKeysLimitsRoutesWhileAStreamGoesOn(t *testing.T) {
	p, base, path, spool := startReloadable(t)

	// A stream begun before the reload: 20 events 50 ms apart.
	req, _ := http.NewRequest(http.MethodPost, p.base+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+relayKey)
	req.Header.Set(mockllm.HeaderChunks, "20")
	req.Header.Set(mockllm.HeaderDelayMs, "50")
	stream, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	br := bufio.NewReader(stream.Body)
	if ev, err := nextEvent(br); err != nil || !strings.Contains(ev, "data: ") {
		t.Fatalf("first event %q: %v", ev, err)
	}

	if resp, _ := ask(t, p.base, "/v1/chat/completions", secondKey); resp.StatusCode != 401 {
		t.Fatalf("second key before the reload: %d, want 401", resp.StatusCode)
	}
	if resp, _ := ask(t, p.base, "/v1/chat/completions", relayKey); resp.Header.Get("X-RateLimit-Limit") != "600" {
		t.Fatalf("limit before the reload: %q", resp.Header.Get("X-RateLimit-Limit"))
	}
	writeFile(t, path, reloadConfig(base, spool, true, 2, `
  - name: messages
    path: /v1/messages
    upstream: `+base+`
    auth_env: TEST_PROVIDER_KEY
    auth_header: x-api-key
`))
	if err := p.app.Reload(path, ""); err != nil {
		t.Fatal(err)
	}
	if resp, body := ask(t, p.base, "/v1/chat/completions", secondKey); resp.StatusCode != 200 {
		t.Fatalf("second key after the reload: %d %s", resp.StatusCode, body)
	}
	resp, _ := ask(t, p.base, "/v1/chat/completions", relayKey)
	if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "2" {
		t.Fatalf("after the reload: %d, limit %q, want the new limit 2", resp.StatusCode, resp.Header.Get("X-RateLimit-Limit"))
	}
	limited := false
	for range 3 {
		if resp, _ := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode == 429 {
			limited = true
		}
	}
	if !limited {
		t.Fatal("no 429 within 4 requests at a limit of 2 per minute")
	}
	req, _ = http.NewRequest(http.MethodPost, p.base+"/v1/messages",
		strings.NewReader(`{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+secondKey)
	req.Header.Set("anthropic-version", "2023-06-01")
	if resp, err := testClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("route added by the reload: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// The stream begun before goes on to its end.
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("stream begun before the reload: %v", err)
	}
	if n := strings.Count(string(rest), "data: "); n < 20 || !strings.Contains(string(rest), "[DONE]") {
		t.Fatalf("stream begun before the reload: %d more events, no [DONE]: %q", n, rest)
	}
	if m := p.metric(`relay_config_reloads_total{result="ok"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("reloads ok: %q", m)
	}
	for _, r := range p.sink.all() {
		if r.Route == "openai" && r.ErrorType != "" && r.Status != 429 && r.Status != 401 {
			t.Errorf("row %+v", r)
		}
	}
}

// TestReloadKeepsSpentBuckets: a reload that changes the rate limits builds
// a new limiter, and the in-process buckets carry on in it: a tenant that
// spent its burst stays refused.
func TestReloadKeepsSpentBuckets(t *testing.T) {
	_, base := mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	writeFile(t, path, reloadConfig(base, filepath.Join(dir, "spool"), false, 3, ""))
	p := startFromFile(t, path)
	codes := func(n int) (got []int) {
		for range n {
			resp, _ := ask(t, p.base, "/v1/chat/completions", relayKey)
			got = append(got, resp.StatusCode)
		}
		return got
	}
	if got := codes(4); fmt.Sprint(got) != "[200 200 200 429]" {
		t.Fatalf("before the reload: %v", got)
	}
	writeFile(t, path, reloadConfig(base, filepath.Join(dir, "spool"), false, 4, ""))
	if err := p.app.Reload(path, ""); err != nil {
		t.Fatal(err)
	}
	// 4 a minute refills one in 15 s: none within these requests.
	if got := codes(2); fmt.Sprint(got) != "[429 429]" {
		t.Fatalf("after the reload: %v, want the spent bucket still spent", got)
	}
}

func TestReloadBrokenFileChangesNothing(t *testing.T) {
	_, base := mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	dir := t.TempDir()
	path := filepath.Join(dir, "relay.yaml")
	spool := filepath.Join(dir, "spool")
	good := reloadConfig(base, spool, false, 600, "")
	writeFile(t, path, good)
	p := startFromFile(t, path)
	tests := []struct{ name, file, field string }{
		{"bad kind", strings.Replace(reloadConfig(base, spool, true, 2, ""), "auth_env: TEST_PROVIDER_KEY", "auth_env: TEST_PROVIDER_KEY\n    kind: bogus", 1), "routes[0].kind"},
		{"bad target", strings.Replace(reloadConfig(base, spool, true, 2, ""), "upstream: "+base, "upstreams: [{url: \"ftp://x\"}]", 1), "routes[0].upstreams[0].url"},
		{"not yaml", "routes: [", "config"},
		{"unknown field", good + "\nbogus_section: 1\n", "config: unknown key bogus_section"},
		// Checked with the file, named as in it; not by the limiter.
		{"negative tenant tokens", strings.Replace(good, "rate_limit:\n", "rate_limit:\n  tenant_tokens: {acme: -5}\n", 1),
			"config: rate_limit.tenant_tokens.acme=-5: must be >= 0"},
	}
	for i, tt := range tests {
		writeFile(t, path, tt.file)
		err := p.app.Reload(path, "")
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: Reload error %v, want one naming %s", tt.name, err, tt.field)
		}
		if resp, _ := ask(t, p.base, "/v1/chat/completions", secondKey); resp.StatusCode != 401 {
			t.Errorf("%s: the broken file's key works: %d", tt.name, resp.StatusCode)
		}
		resp, _ := ask(t, p.base, "/v1/chat/completions", relayKey)
		if resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "600" {
			t.Errorf("%s: running config changed: %d limit %q", tt.name, resp.StatusCode, resp.Header.Get("X-RateLimit-Limit"))
		}
		if m := p.metric(`relay_config_reloads_total{result="error"}`); !strings.HasSuffix(m, fmt.Sprintf(" %d", i+1)) {
			t.Errorf("%s: reload errors: %q", tt.name, m)
		}
	}
}

func TestReloadEnvFileProviderKey(t *testing.T) {
	_, base := mock(t, providerKey)
	const name = "POOL_RELOAD_PROVIDER_KEY"
	t.Setenv(name, "") // restored when the test ends
	os.Unsetenv(name)
	dir := t.TempDir()
	path, env := filepath.Join(dir, "relay.yaml"), filepath.Join(dir, ".env")
	writeFile(t, path, strings.ReplaceAll(reloadConfig(base, filepath.Join(dir, "spool"), false, 600, ""), "TEST_PROVIDER_KEY", name))
	p := startFromFile(t, path)
	if resp, _ := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode != 502 {
		t.Fatalf("without the provider key: %d, want 502", resp.StatusCode)
	}
	writeFile(t, env, name+"="+providerKey+"\n")
	if err := p.app.Reload(path, env); err != nil {
		t.Fatal(err)
	}
	if resp, body := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode != 200 {
		t.Fatalf("after .env gave the key: %d %s", resp.StatusCode, body)
	}
	// A broken config file undoes the .env it came with.
	good, _ := os.ReadFile(path)
	writeFile(t, env, name+"=wrong-key\n")
	writeFile(t, path, "routes: [")
	if err := p.app.Reload(path, env); err == nil {
		t.Fatal("a broken file reloaded")
	}
	if os.Getenv(name) != providerKey {
		t.Fatal("a refused reload changed the environment")
	}
	if resp, _ := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode != 200 {
		t.Fatalf("after a refused reload: %d", resp.StatusCode)
	}
	writeFile(t, path, string(good))
	// A broken .env is refused naming its line, not the key on it.
	writeFile(t, env, name+"=\"sk-half-quoted-SECRET\n")
	if err := p.app.Reload(path, env); err == nil || !strings.Contains(err.Error(), "line 1 ("+name+")") || strings.Contains(err.Error(), "SECRET") {
		t.Fatalf("broken .env: %v", err)
	}
	writeFile(t, env, name+"=wrong-key\n")
	if err := p.app.Reload(path, env); err != nil {
		t.Fatal(err)
	}
	if resp, _ := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode != 401 {
		t.Fatalf("after .env changed the key: %d, want the mock's 401", resp.StatusCode)
	}
}

// TestSIGHUPReloadsRelayProcess sends a real SIGHUP to a relay process.
func TestSIGHUPReloadsRelayProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the relay binary")
	}
	_, base := mock(t, providerKey)
	bin := relayBinary(t)
	dir := t.TempDir()
	port := servicetest.FreePort(t)
	path := filepath.Join(dir, "relay.yaml")
	spool := filepath.Join(dir, "spool")
	file := func(added bool) string {
		s := reloadConfig(base, spool, added, 600, "")
		s = strings.Replace(s, "  host: 127.0.0.1\n", fmt.Sprintf("  host: 127.0.0.1\n  port: %d\n", port), 1)
		return strings.Replace(s, "level: error", "level: info", 1) // the reload's line is at info
	}
	writeFile(t, path, file(false))
	cmd := exec.Command(bin, "-config", path, "-env-file", "/nonexistent")
	cmd.Env = append(os.Environ(), "TEST_PROVIDER_KEY="+providerKey)
	var out servicetest.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	relayURL := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitUntil(t, "relay listening", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	if resp, _ := ask(t, relayURL, "/v1/chat/completions", secondKey); resp.StatusCode != 401 {
		t.Fatalf("second key before SIGHUP: %d", resp.StatusCode)
	}
	writeFile(t, path, file(true))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "second key accepted after SIGHUP", func() bool {
		resp, _ := ask(t, relayURL, "/v1/chat/completions", secondKey)
		return resp.StatusCode == 200
	})
	writeFile(t, path, "routes: [")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the refused reload logged", func() bool { return strings.Contains(out.String(), "configuration reload refused") })
	if resp, _ := ask(t, relayURL, "/v1/chat/completions", secondKey); resp.StatusCode != 200 {
		t.Fatalf("after a broken file: %d", resp.StatusCode)
	}
	if testing.Verbose() {
		t.Log(out.String())
	}
	// One line of what changed, no key; nothing that needs a restart
	// changed.
	if !strings.Contains(out.String(), "configuration reloaded") || strings.Contains(out.String(), secondKey) ||
		strings.Contains(out.String(), "need a restart") {
		t.Errorf("log: %s", out.String())
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestReloadLeavesServerBodyLimit: server.max_body_bytes changed in the
// file is not applied by a reload (the server section needs a restart, as
// the log says), nor through the routes that take it as their default; a
// route's own max_body_bytes is.
func TestReloadLeavesServerBodyLimit(t *testing.T) {
	p, base, path, spool := startReloadable(t)
	if resp, body := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode != 200 {
		t.Fatalf("before the reload: %d %s", resp.StatusCode, body)
	}
	small := strings.Replace(reloadConfig(base, spool, false, 600, ""), "server:\n", "server:\n  max_body_bytes: 40\n", 1)
	writeFile(t, path, small)
	if err := p.app.Reload(path, ""); err != nil {
		t.Fatal(err)
	}
	if resp, body := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode != 200 {
		t.Fatalf("after a reload that changed only server.max_body_bytes: %d %s", resp.StatusCode, body)
	}
	own := strings.Replace(small, "auth_env: TEST_PROVIDER_KEY\n", "auth_env: TEST_PROVIDER_KEY\n    max_body_bytes: 40\n", 1)
	writeFile(t, path, own)
	if err := p.app.Reload(path, ""); err != nil {
		t.Fatal(err)
	}
	if resp, body := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode != 413 {
		t.Fatalf("after a reload that set the route's own max_body_bytes 40: %d %s", resp.StatusCode, body)
	}
}

// TestReloadKeepsLimiterCounters: a reload that changes the limits
// replaces the limiter; the decision counters go on from where they were
// (they restarted at zero: a counter going down).
func TestReloadKeepsLimiterCounters(t *testing.T) {
	p, base, path, spool := startReloadable(t)
	const admitted = `relay_ratelimit_decisions_total{result="admitted",source="local"}`
	for range 5 {
		if resp, body := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	if m := p.metric(admitted); m != admitted+" 5" {
		t.Fatalf("before the reload: %q", m)
	}
	writeFile(t, path, reloadConfig(base, spool, false, 500, ""))
	if err := p.app.Reload(path, ""); err != nil {
		t.Fatal(err)
	}
	if resp, body := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode != 200 || resp.Header.Get("X-RateLimit-Limit") != "500" {
		t.Fatalf("after the reload: %d limit %q %s", resp.StatusCode, resp.Header.Get("X-RateLimit-Limit"), body)
	}
	if m := p.metric(admitted); m != admitted+" 6" {
		t.Fatalf("after the reload and one more request: %q, want 6", m)
	}
}

// TestReloadRefusesLosingEveryKey: a file without keys, while keys run, is
// refused (read half-written, most likely); the running keys stay.
func TestReloadRefusesLosingEveryKey(t *testing.T) {
	p, base, path, spool := startReloadable(t)
	noKeys := strings.Replace(reloadConfig(base, spool, false, 600, ""), "    - key: "+relayKey+"\n      tenant: test-tenant\n", "", 1)
	writeFile(t, path, noKeys)
	if err := p.app.Reload(path, ""); err == nil || !strings.Contains(err.Error(), "auth.keys") {
		t.Fatalf("Reload = %v; want a refusal naming auth.keys", err)
	}
	if resp, body := ask(t, p.base, "/v1/chat/completions", relayKey); resp.StatusCode != 200 {
		t.Fatalf("after the refused reload: %d %s", resp.StatusCode, body)
	}
}

// TestReloadLogCountsKeyLimits: a reload that changes only a key's own
// rate_limit logs rate_limits_changed=true (it logged false, though the
// new limit applied).
func TestReloadLogCountsKeyLimits(t *testing.T) {
	cfg := func(limit int) *Config {
		return &Config{Auth: AuthConfig{Keys: []KeyConfig{{Key: relayKey, Tenant: "t", RateLimit: limit}}}}
	}
	for _, tt := range []struct {
		before, after int
		want          string
	}{{0, 7, "rate_limits_changed=true"}, {7, 9, "rate_limits_changed=true"}, {7, 7, "rate_limits_changed=false"}} {
		var out bytes.Buffer
		old, next := cfg(tt.before), cfg(tt.after)
		a := &App{log: slog.New(slog.NewTextHandler(&out, nil)), cfg: old}
		oldKeys, err := keysOf(old)
		if err != nil {
			t.Fatal(err)
		}
		newKeys, err := keysOf(next)
		if err != nil {
			t.Fatal(err)
		}
		a.logReload(old, next, next, oldKeys, newKeys, nil)
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("key rate_limit %d -> %d: log %q; want %s", tt.before, tt.after, out.String(), tt.want)
		}
	}
}

// TestReloadLogsChangedKeys: a reload that changes what a key may do (its
// tenant, the tenants it may act for) says so in its log line
// (keys_changed), never showing the key; it said keys_added=0
// keys_removed=0 and nothing else, so an authorization change left no trace.
func TestReloadLogsChangedKeys(t *testing.T) {
	_, base := mock(t, providerKey)
	t.Setenv("TEST_PROVIDER_KEY", providerKey)
	dir := t.TempDir()
	path, spool := filepath.Join(dir, "relay.yaml"), filepath.Join(dir, "spool")
	conf := func(tenant string) string {
		c := reloadConfig(base, spool, true, 600, "")
		c = strings.Replace(c, "level: error", "level: info", 1)
		return strings.Replace(c, "      tenant: second\n", "      tenant: "+tenant+"\n", 1)
	}
	writeFile(t, path, conf("second"))
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var log servicetest.Buffer
	a, err := New(cfg, slog.New(slog.NewTextHandler(&log, nil)), &poolRows{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = a.Shutdown(ctx)
	})
	writeFile(t, path, conf("third"))
	if err := a.Reload(path, ""); err != nil {
		t.Fatal(err)
	}
	out := log.String()
	if !strings.Contains(out, "configuration reloaded") || !strings.Contains(out, "keys_changed=1") {
		t.Fatalf("reload log does not count the changed key: %s", out)
	}
	if strings.Contains(out, secondKey) || strings.Contains(out, relayKey) {
		t.Fatal("the reload log shows a key")
	}
}
