package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

const minimalRoute = `
routes:
  - name: openai
    path: /v1/chat/completions
    upstream: https://api.openai.com
    auth_env: OPENAI_API_KEY
`

func TestShippedConfigLoads(t *testing.T) {
	cfg, err := Load("../configs/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Loopback: the file carries a published relay key.
	if cfg.Server.Port != 8080 || cfg.Server.Host != "127.0.0.1" || cfg.Server.Timeout != 300*time.Second || len(cfg.Routes) != 3 {
		t.Errorf("server %+v, %d routes", cfg.Server, len(cfg.Routes))
	}
	tts := cfg.Routes[2]
	if tts.Kind != "raw" || tts.Capture != "meta" || cfg.Routes[0].Capture != "full" {
		t.Errorf("capture defaults: tts %s/%s openai %s", tts.Kind, tts.Capture, cfg.Routes[0].Capture)
	}
	if cfg.Routes[1].AuthHeader != "x-api-key" || cfg.Routes[1].Headers["anthropic-version"] != "2023-06-01" {
		t.Errorf("anthropic route %+v", cfg.Routes[1])
	}
	if cfg.RateLimit.Default != 100 || cfg.RateLimit.Tenants["test-tenant"] != 600 {
		t.Errorf("rate limit %+v", cfg.RateLimit)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimalRoute))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Routes[0]
	if cfg.Server.Port != 8080 || cfg.Server.MaxBodyBytes != 32<<20 || r.Kind != "sse" || r.AuthHeader != "Authorization" ||
		r.MaxCaptureBytes != 4<<20 || r.MaxBodyBytes != 32<<20 || cfg.Storage.SpoolDir != "data/spool" ||
		cfg.Storage.ClickHouse.Database != "relay" || cfg.RateLimit.OnRedisError != "local" || cfg.Server.GCPercent != 25 {
		t.Errorf("defaults not applied: %+v %+v", cfg.Server, r)
	}
}

func TestEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	if err := os.WriteFile(path, []byte(minimalRoute), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RELAY_SERVER__PORT", "9099")
	t.Setenv("RELAY_STORAGE__CLICKHOUSE__URL", "http://127.0.0.1:8123")
	t.Setenv("RELAY_STORAGE__SPOOL_DIR", "/tmp/x")
	t.Setenv("RELAY_TEST_SOMETHING_ELSE", "ignored")
	// A plain number is seconds, from the environment as in YAML.
	t.Setenv("RELAY_STORAGE__CLICKHOUSE__FLUSH_INTERVAL", "2")
	t.Setenv("RELAY_SERVER__SHUTDOWN_GRACE", "1.5")
	t.Setenv("RELAY_SERVER__TIMEOUT", "90s")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Port != 9099 || cfg.Storage.ClickHouse.URL != "http://127.0.0.1:8123" || cfg.Storage.SpoolDir != "/tmp/x" {
		t.Errorf("overrides not applied: port %d url %q spool %q", cfg.Server.Port, cfg.Storage.ClickHouse.URL, cfg.Storage.SpoolDir)
	}
	t.Setenv("RELAY_ROUTES__0__UPSTREAM", "http://127.0.0.1:1")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "RELAY_ROUTES__0__UPSTREAM: list items") {
		t.Errorf("a list item from the environment: %v", err)
	}
	if s := cfg.Server; cfg.Storage.ClickHouse.FlushInterval != 2*time.Second || s.ShutdownGrace != 1500*time.Millisecond || s.Timeout != 90*time.Second {
		t.Errorf("durations: flush_interval %v shutdown_grace %v timeout %v", cfg.Storage.ClickHouse.FlushInterval, s.ShutdownGrace, s.Timeout)
	}
}

func TestEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte("STREAM_RELAY_TEST_A=from-file\nSTREAM_RELAY_TEST_B=from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STREAM_RELAY_TEST_B", "from-env")
	os.Unsetenv("STREAM_RELAY_TEST_A")
	t.Cleanup(func() { os.Unsetenv("STREAM_RELAY_TEST_A") })
	if err := LoadEnvFile(path); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("STREAM_RELAY_TEST_A") != "from-file" || os.Getenv("STREAM_RELAY_TEST_B") != "from-env" {
		t.Errorf("A=%q B=%q", os.Getenv("STREAM_RELAY_TEST_A"), os.Getenv("STREAM_RELAY_TEST_B"))
	}
	if err := LoadEnvFile(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("missing .env: %v", err)
	}
}

// TestEnvFileErrorsHideValues: a .env file that does not parse is refused
// naming the line (and the variable, when readable), never the value: the
// error goes to stderr at start and to the log on a refused reload.
func TestEnvFileErrorsHideValues(t *testing.T) {
	for _, tt := range []struct{ name, file, want string }{
		{"open quote", "OK_A=1\nKEY_A=\"sk-prov-LEAK1-SECRET\n", "line 2 (KEY_A)"},
		{"no equals", "# comment\n\nKEY_A sk-prov-LEAK3-SECRET\n", "line 3: not NAME=VALUE"},
		// Words alone: the parser reads a name across spaces up to "=".
		{"words alone", "A=1\njust words SECRET\nB=2\n", "line 2: not NAME=VALUE"},
		{"words alone, last line", "A=1\njust words SECRET", "line 2: not NAME=VALUE"},
		// A bare key looks like a variable name: without "=" it is not one.
		{"bare key, last line", "A=1\nghp_SECRET123abc", "line 2: not NAME=VALUE"},
		{"bare key", "A=1\nsk_live_SECRET9\nB=2\n", "line 2: not NAME=VALUE"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".env")
			if err := os.WriteFile(path, []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			err := LoadEnvFile(path)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error %v, want one naming %q without the value", err, tt.want)
			}
		})
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	route := func(extra string) string {
		return "routes:\n  - name: a\n    path: /a\n    upstream: http://x\n" + extra
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown kind", route("    kind: websocket\n"), "routes[0].kind=websocket"},
		{"duplicate path", route("  - name: b\n    path: /a\n    upstream: http://y\n"), "routes[1].path=/a: duplicate path"},
		{"duplicate name", route("  - name: a\n    path: /b\n    upstream: http://y\n"), "routes[1].name=a: duplicate"},
		{"reserved name", "routes:\n  - name: unmatched\n    path: /a\n    upstream: http://x\n", "routes[0].name=unmatched: reserved"},
		{"relative upstream", "routes:\n  - name: a\n    path: /a\n    upstream: api.openai.com\n", "routes[0].upstream=api.openai.com"},
		{"ftp upstream", "routes:\n  - name: a\n    path: /a\n    upstream: ftp://h\n", "routes[0].upstream=ftp://h"},
		{"negative duration", route("    idle_timeout: -5s\n"), "routes[0].idle_timeout=-5s"},
		{"negative server timeout", route("server:\n  timeout: -1s\n"), "server.timeout=-1s"},
		{"bad duration", route("server:\n  timeout: soon\n"), `"soon" is not a duration`},
		{"unknown field", route("server:\n  prot: 80\n"), "prot"},
		{"unknown route field", route("    upstrem: http://x\n"), "upstrem"},
		{"no routes", "server:\n  port: 80\n", "routes=[]"},
		{"path without slash", "routes:\n  - name: a\n    path: a\n    upstream: http://x\n", "routes[0].path=a"},
		// Requests are matched after normalization: these would match none.
		{"path with //", "routes:\n  - name: a\n    path: /v1//chat/*\n    upstream: http://x\n", "routes[0].path=/v1//chat/*: must be a normalized path"},
		{"path with a dot segment", "routes:\n  - name: a\n    path: /v1/./x\n    upstream: http://x\n", "routes[0].path=/v1/./x: must be a normalized path"},
		{"path with an escape", "routes:\n  - name: a\n    path: /v1/chat%2Fcompletions\n    upstream: http://x\n", "routes[0].path=/v1/chat%2Fcompletions: must be a normalized path"},
		{"upstream with an empty port", "routes:\n  - name: a\n    path: /a\n    upstream: \"https://api.example.com:/v1\"\n", "has an empty port"},
		{"bad capture", route("    capture: some\n"), "routes[0].capture=some"},
		{"tiny read buffer", route("    read_buffer_bytes: 100\n"), "routes[0].read_buffer_bytes=100"},
		{"huge read buffer", route("    read_buffer_bytes: 1073741824\n"), "routes[0].read_buffer_bytes=1073741824"},
		{"key and hash", route("auth:\n  keys:\n    - key: k\n      key_sha256: aa\n      tenant: t\n"), "auth.keys[0].key_sha256"},
		{"bad hash", route("auth:\n  keys:\n    - key_sha256: zz\n      tenant: t\n"), "auth.keys[0].key_sha256"},
		{"key without tenant", route("auth:\n  keys:\n    - key: k\n"), "auth.keys[0].tenant"},
		// The second entry is the first's key by its hash: one would replace the other.
		{"key and its hash", route("auth:\n  keys:\n    - key: sk-dup\n      tenant: a\n    - key_sha256: 0E3A053EA7ECC6B6500136038808F3649B0B3ACC9867AAB6B8FACF6449648FEF\n      tenant: b\n"), "auth.keys[1].key=<set>: duplicate key"},
		{"tenant with a brace", route("auth:\n  keys:\n    - key: sk-a\n      tenant: \"a}b\"\n"), "auth.keys[0].tenant=a}b: must not contain"},
		{"tenants with a brace", route("auth:\n  keys:\n    - key: sk-a\n      tenant: a\n      tenants: [\"{x\"]\n"), "auth.keys[0].tenants[0]"},
		// X-Tenant-ID arrives trimmed: never chosen, its own key's 403.
		{"tenant with white space", route("auth:\n  keys:\n    - key: sk-a\n      tenant: \"a \"\n"), `auth.keys[0].tenant="a ": must not begin or end with white space`},
		{"tenants with white space", route("auth:\n  keys:\n    - key: sk-a\n      tenant: a\n      tenants: [\"\\tb\"]\n"), `auth.keys[0].tenants[0]="\tb"`},
		{"tenants blank", route("auth:\n  keys:\n    - key: sk-a\n      tenant: a\n      tenants: [\"  \"]\n"), `auth.keys[0].tenants[0]="  "`},
		{"key with white space", route("auth:\n  keys:\n    - key: \"sk-x \"\n      tenant: a\n"), "auth.keys[0].key=<set>: must not begin or end with white space"},
		{"bad on_redis_error", route("rate_limit:\n  on_redis_error: panic\n"), "rate_limit.on_redis_error=panic"},
		// Read as unset, it became 100 without a word.
		{"default rate 0", route("rate_limit:\n  default: 0\n"), "rate_limit.default=0: must be > 0"},
		{"negative lease", route("rate_limit:\n  lease: -1\n"), "rate_limit.lease=-1"},
		{"negative lease_ttl", route("rate_limit:\n  lease_ttl: -1s\n"), "rate_limit.lease_ttl=-1s"},
		{"renewal at the default lease", route("rate_limit:\n  lease_renew_below: 16\n"), "rate_limit.lease_renew_below=16"},
		{"renewal at the lease", route("rate_limit:\n  lease: 8\n  lease_renew_below: 8\n"), "rate_limit.lease_renew_below=8"},
		{"negative gc_percent", route("server:\n  gc_percent: -1\n"), "server.gc_percent=-1"},
		{"renewal below -1", route("rate_limit:\n  lease_renew_below: -2\n"), "rate_limit.lease_renew_below=-2"},
		{"lease max below the lease", route("rate_limit:\n  lease: 32\n  lease_max: 16\n"), "rate_limit.lease_max=16"},
		{"bad durability", route("storage:\n  clickhouse:\n    durability: sometimes\n"), "storage.clickhouse.durability=sometimes"},
		{"bad port", route("server:\n  port: 70000\n"), "server.port=70000"},
		{"header injection", route("    headers: {x-a: \"v\\r\\nevil: 1\"}\n"), "routes[0].headers.x-a"},
		{"negative batch_rows", route("storage:\n  clickhouse:\n    batch_rows: -1\n"), "storage.clickhouse.batch_rows=-1"},
		{"negative ttl_days", route("storage:\n  clickhouse:\n    ttl_days: -3\n"), "storage.clickhouse.ttl_days=-3"},
		{"negative spool_max_bytes", route("storage:\n  clickhouse:\n    spool_max_bytes: -1\n"), "storage.clickhouse.spool_max_bytes=-1"},
		{"duration word", route("storage:\n  clickhouse:\n    flush_interval: 2x\n"), `"2x" is not a duration`},
		// A ticker this fast spun a core with nothing to flush.
		{"tiny flush_interval", route("storage:\n  clickhouse:\n    flush_interval: 1ns\n"), "storage.clickhouse.flush_interval=1ns: must be at least 10ms"},
		// Dialed, they failed every request as 502 upstream_connect.
		{"upstream port too large", "routes:\n  - name: a\n    path: /a\n    upstream: http://127.0.0.1:99999\n", "routes[0].upstream=http://127.0.0.1:99999: has port 99999: must be 1..65535"},
		{"upstream port 0", "routes:\n  - name: a\n    path: /a\n    upstream: http://127.0.0.1:0\n", "has port 0"},
		{"clickhouse port", route("storage:\n  clickhouse:\n    url: http://127.0.0.1:99999\n"), "storage.clickhouse.url=http://127.0.0.1:99999: has port 99999"},
		// 16 × lease overflowed into a negative lease_max the operator never set.
		{"huge lease", route("rate_limit:\n  lease: 1000000000000000000\n"), "rate_limit.lease=1000000000000000000: must be 1..1000000"},
		{"limit above the bound", route("rate_limit:\n  burst: 1000000000001\n"), "rate_limit.burst=1000000000001: must be at most 10^12"},
		// It failed at listen, the error naming server.port.
		{"server.host bracketed", route("server:\n  host: \"[::1]\"\n"), "server.host=[::1]: must be a host name or an address without brackets"},
		{"server.host with a port", route("server:\n  host: \"127.0.0.1:80\"\n"), "server.host=127.0.0.1:80"},
		// The key went upstream as the Host, or nowhere.
		{"auth_header Host", route("    auth_env: K\n    auth_header: Host\n"), "routes[0].auth_header=Host: names a field the relay sets or drops itself"},
		{"auth_header Content-Length", route("    auth_env: K\n    auth_header: content-length\n"), "routes[0].auth_header=content-length"},
		// Forwarded as the upstream connection's own (Upgrade, Te,
		// Connection) or dropped (Content-Length), without a word.
		{"set_headers Connection", route("    set_headers: {Connection: keep-alive}\n"), "routes[0].set_headers=Connection: names a field of the connection"},
		{"headers Upgrade", route("    headers: {upgrade: h2c}\n"), "routes[0].headers=upgrade: names a field of the connection"},
		{"headers Transfer-Encoding", route("    headers: {Transfer-Encoding: chunked}\n"), "routes[0].headers=Transfer-Encoding"},
		// "/v1/" was the prefix: /v1/chat/completions matched nothing.
		{"path //*", "routes:\n  - name: a\n    path: /v1//*\n    upstream: http://x\n", "routes[0].path=/v1//*: must be a normalized path"},
		// The value is shown for number and bool fields (never a string's: keys go there).
		{"size with a unit", route("server:\n  max_body_bytes: 10 MB\n"), `server.max_body_bytes="10 MB": must be a whole number`},
		{"bool word", route("server:\n  detach_streams: maybe\n"), `server.detach_streams="maybe": must be true or false`},
		{"default above the bound", route("rate_limit:\n  default: 2000000000000\n"), "rate_limit.default=2000000000000: must be at most 10^12 (-1: unlimited)"},
		{"failover on ws", "routes:\n  - name: a\n    path: /a\n    upstream: ws://x\n    kind: ws\n    failover:\n      on: [429]\n", "routes[0].failover"},
		{"health on ws", "routes:\n  - name: a\n    path: /a\n    upstream: ws://x\n    kind: ws\n    health:\n      max_fails: 1\n", "routes[0].health"},
		{"metrics on port 0", route("metrics:\n  addr: 127.0.0.1:0\n"), "metrics.addr=127.0.0.1:0: needs a fixed port"},
		// Named under url, which the operator never set.
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { parseError(t, tt.yaml, tt.want) })
	}
}

// parseError parses yaml, which must be refused with an error naming want,
// and returns the error's text.
func parseError(t *testing.T, yaml, want string) string {
	t.Helper()
	_, err := Parse([]byte(yaml))
	if err == nil {
		t.Fatal("no error")
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %q", err, want)
	}
	return err.Error()
}

// TestConfigErrorsHideURLCredentials: a refused URL is named without its
// user info or query, where passwords and provider keys travel: the error
// goes to stderr on start-up and to the log on a refused reload.
func TestConfigErrorsHideURLCredentials(t *testing.T) {
	route := func(upstream string) string {
		return "routes:\n  - name: a\n    path: /a\n    upstream: " + upstream + "\n"
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"upstream user info", route("http://ops:UPSTREAMPASS@10.0.0.1:9/v1"), "routes[0].upstream=http://redacted@10.0.0.1:9/v1"},
		{"upstream query key", route("'http://h/v1beta?key=AIzaPROVIDERKEY'"), "routes[0].upstream=http://h/v1beta?redacted"},
		{"upstream both", route("'https://u:PASS@h?key=PROVIDERKEY#x'"), "routes[0].upstream=https://redacted@h?redacted"},
		{"pool target", "routes:\n  - name: a\n    path: /a\n    upstreams:\n      - url: 'http://h?key=PROVIDERKEY'\n",
			"routes[0].upstreams[0].url=http://h?redacted"},
		{"clickhouse url", route("http://x") + "storage:\n  clickhouse:\n    url: http://chuser:CHPASS@127.0.0.1:8123\n",
			"storage.clickhouse.url=http://redacted@127.0.0.1:8123"},
		{"clickhouse urls", route("http://x") + "storage:\n  clickhouse:\n    urls: ['http://a:8123', 'http://u:CHPASS@b:8123']\n",
			"storage.clickhouse.urls[1]=http://redacted@b:8123"},
		// A redis:// URL is not an address: refused, its password unshown
		// (it was accepted, logged, and never connected).
		{"redis url", route("http://x") + "storage:\n  redis:\n    addr: 'redis://:REDISPASS@127.0.0.1:6379'\n",
			"storage.redis.addr=[invalid]: address 1 is a URL"},
		{"redis cluster url", route("http://x") + "storage:\n  redis:\n    addr: '127.0.0.1:7000, u:PASS@127.0.0.1:7001'\n",
			"storage.redis.addr=[invalid]: address 2 is a URL"},
		{"redis without port", route("http://x") + "storage:\n  redis:\n    addr: 'localhost'\n",
			"storage.redis.addr=[invalid]: address 1 is not host:port"},
		// An addr that is no host:port is named as addr (not the url made of
		// it), user info, query and fragment hidden, '#', '?', '@' in a
		// password too.
		{"clickhouse addr", route("http://x") + "storage:\n  clickhouse:\n    addr: \"user:PASS@host:9000:9\"\n", "storage.clickhouse.addr=redacted:host:9000:9: must be host:port"},
		{"clickhouse addr with a query", route("http://x") + "storage:\n  clickhouse:\n    addr: \"host:9000:9?password=PASS#PASS\"\n", "storage.clickhouse.addr=redacted:host:9000:9: must be host:port"},
		// A password holding '/', '?' or '#' (base64 does) ends no host
		// here: those ended it and showed the password.
		{"clickhouse url, a password with /", route("http://x") + "storage:\n  clickhouse:\n    url: 'http://default:Zx9/QwPASS@ch.internal:8123'\n",
			"storage.clickhouse.url=http://redacted@ch.internal:8123: not a URL"},
		{"upstream, a password with / and +", route("'https://svc:tok/en-PASS+x@llm.internal'"), "routes[0].upstream=https://redacted@llm.internal"},
		{"clickhouse url, a password with #", route("http://x") + "storage:\n  clickhouse:\n    url: 'http://default:Zx9#PASS@ch.internal:8123'\n",
			"storage.clickhouse.url=http://redacted: "},
		{"clickhouse url, a password with ?", route("http://x") + "storage:\n  clickhouse:\n    url: 'http://default:Zx9?PASS@ch.internal:8123/?x=1'\n",
			"storage.clickhouse.url=http://redacted: "},
		// An '@' in the query: the key after it was shown.
		{"upstream query with an @", route("'http://h/v1?user=me@corp.com&key=PROVIDERKEY'"), "routes[0].upstream=http://redacted"},
		{"clickhouse addr, a password with # ? @", route("http://x") + "storage:\n  clickhouse:\n    addr: \"user:PASS#?@PASS@host:9000:9\"\n", "storage.clickhouse.addr=redacted:host:9000:9: must be host:port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := parseError(t, tt.yaml, tt.want)
			for _, secret := range []string{"PASS", "PROVIDERKEY"} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q shows the credential", msg)
				}
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	b, _ := os.ReadFile("../configs/config.yaml")
	f.Add(b)
	f.Add([]byte(minimalRoute))
	f.Add([]byte("routes: [{name: a, path: /a, upstream: 'http://x', kind: raw}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse(b)
		if err == nil && len(cfg.Routes) == 0 {
			t.Fatal("config without routes accepted")
		}
	})
}

// TestEnvMisspelled: RELAY_ variables meant as settings that name none are
// refused by name instead of ignored, and the lists of objects cannot be
// replaced from the environment without an index either (the decoder took
// RELAY_ROUTES__NAME for a list of one route, and the file's routes were
// gone). Other RELAY_ variables (the scripts') are left alone.
func TestEnvMisspelled(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(minimalRoute), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"RELAY_SERVER_PORT":         "RELAY_SERVER_PORT: levels are separated by a double underscore (RELAY_SERVER__PORT)",
		"RELAY_RATE_LIMIT_DEFAULT":  "(RELAY_RATE_LIMIT__DEFAULT)",
		"RELAY_SEVRER__PORT":        `RELAY_SEVRER__PORT: no setting has this name: its first level "sevrer"`,
		"RELAY_ROUTES__NAME":        "RELAY_ROUTES__NAME: list items",
		"RELAY_AUTH__KEYS__KEY":     "RELAY_AUTH__KEYS__KEY: list items",
		"RELAY_AUTH__KEYS":          "RELAY_AUTH__KEYS: list items",
		"RELAY_SERVER__TIMEOUT":     "is not a duration this relay can hold",
		"RELAY_RATE_LIMIT__DEFAULT": `rate_limit.default="2.5": must be a whole number`,
	} {
		t.Run(name, func(t *testing.T) {
			v := "21313"
			switch name {
			case "RELAY_SERVER__TIMEOUT":
				v = "99999999999999"
			case "RELAY_RATE_LIMIT__DEFAULT":
				v = "2.5"
			}
			t.Setenv(name, v)
			if _, err := Load(path); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s=%s: %v, want an error containing %q", name, v, err, want)
			}
		})
	}
	t.Setenv("RELAY_CLICKHOUSE_HTTP_PORT", "18123")
	t.Setenv("RELAY_SERVICES_DIR", "/tmp/x")
	// What Kubernetes sets in a pod for Services named relay-server and
	// relay-metrics (service links): no settings, and no typos either.
	t.Setenv("RELAY_SERVER_SERVICE_HOST", "10.96.0.12")
	t.Setenv("RELAY_SERVER_SERVICE_PORT_HTTP", "8080")
	t.Setenv("RELAY_SERVER_PORT", "tcp://10.96.0.12:8080")
	t.Setenv("RELAY_SERVER_PORT_8080_TCP_ADDR", "10.96.0.12")
	t.Setenv("RELAY_METRICS_PORT", "tcp://10.96.0.13:9100")
	t.Setenv("RELAY_SERVER_PORTAL_PORT", "tcp://10.96.0.14:80") // a Service relay-server-portal
	t.Setenv("RELAY_SERVER_PORTAL_PORT_80_TCP_ADDR", "10.96.0.14")
	t.Setenv("RELAY_STORAGE__CLICKHOUSE__URLS", "http://127.0.0.1:1,http://127.0.0.1:2")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Storage.ClickHouse.URLs; len(got) != 2 {
		t.Errorf("a whole list of strings from the environment: %q", got)
	}
}

// TestNumbersRefused: an integer setting given a fraction, or a number past
// what it holds, is refused naming the field (it was truncated: 0.9 tokens
// a minute became 0, no budget at all; 2^64-1 became -1), and so is a
// duration in seconds past what a duration holds (2^64 ns wrapped to
// 290 ms: every stream cut at 0.3 s).
func TestNumbersRefused(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"rate_limit: {default: 2.9}", "'rate_limit.default' 2.9 is not a whole number"},
		{"rate_limit: {tokens_per_minute: 0.9}", "'rate_limit.tokens_per_minute' 0.9 is not a whole number"},
		{"rate_limit: {tenants: {acme: 1.5}}", "1.5 is not a whole number"},
		{"rate_limit: {default: 99999999999999999999}", "'rate_limit.default' 100000000000000000000 is too large"},
		{"rate_limit: {burst: 18446744073709551615}", "'rate_limit.burst' 18446744073709551615 is too large"},
		{"server: {timeout: 18446744074}", "'server.timeout' 1.8446744074e+10 seconds is not a duration"},
		{"server: {timeout: 1e300}", "'server.timeout' 1e+300 seconds is not a duration"},
		{"rate_limit: {default: 1000000000001}", "config: rate_limit.default=1000000000001: must be at most 10^12"},
		{"rate_limit: {tenant_tokens: {acme: 1000000000001}}", "config: rate_limit.tenant_tokens.acme=1000000000001: must be at most 10^12"},
	} {
		_, err := Parse([]byte(minimalRoute + tc.yaml + "\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.yaml, err, tc.want)
		}
	}
	cfg, err := Parse([]byte(minimalRoute + "rate_limit: {default: 60.0}\nserver: {timeout: 1.5}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RateLimit.Default != 60 || cfg.Server.Timeout != 1500*time.Millisecond {
		t.Errorf("whole float and fractional seconds: default %d timeout %v", cfg.RateLimit.Default, cfg.Server.Timeout)
	}
}

// TestTextKeptAsWritten: a setting that is text gets an unquoted value as
// written where YAML reads it as a number, a bool or a date that gives
// other text back: the key 0123456789 was the key "123456789" (the caller
// sending the configured key got 401), the password 012345 the octal
// "5349", 9.10 "9.1", an unquoted anthropic-version a refused time. A
// setting that is a number reads such text as YAML would.
func TestTextKeptAsWritten(t *testing.T) {
	cfg, err := Parse([]byte(`
auth:
  keys:
    - {key: 0123456789, tenant: 007}
    - {key: 0x1F2E3D4C, tenant: True}
    - {key: 1e3, tenant: 12}
    - {key: true, tenant: false}
storage:
  clickhouse: {password: 012345, user: 2023-06-01}
  redis: {password: 9.10}
server: {port: 0x1F90, timeout: 1.50, read_timeout: 0x10}
rate_limit: {default: 60.0, burst: 1e3, tenants: {"007": 010}, disabled: true}
routes:
  - name: a
    path: /a
    upstream: http://x
    headers: {anthropic-version: 2023-06-01, x-n: 1, x-f: 0.50, helicone-cache-enabled: true}
    set_headers: {x-off: false}
    failover: {on: [429, 5xx]}
`))
	if err != nil {
		t.Fatal(err)
	}
	keys := cfg.Auth.Keys
	for i, want := range [][2]string{{"0123456789", "007"}, {"0x1F2E3D4C", "True"}, {"1e3", "12"}, {"true", "false"}} {
		if keys[i].Key != want[0] || keys[i].Tenant != want[1] {
			t.Errorf("key %d = %q tenant %q, want %q %q", i, keys[i].Key, keys[i].Tenant, want[0], want[1])
		}
	}
	if ch := cfg.Storage.ClickHouse; ch.Password != "012345" || ch.User != "2023-06-01" || cfg.Storage.Redis.Password != "9.10" {
		t.Errorf("passwords %q %q, user %q", ch.Password, cfg.Storage.Redis.Password, ch.User)
	}
	if h := cfg.Routes[0].Headers; h["anthropic-version"] != "2023-06-01" || h["x-n"] != "1" || h["x-f"] != "0.50" || h["helicone-cache-enabled"] != "true" {
		t.Errorf("headers %v", h)
	}
	// true and false went as "1" and "0"; a bool setting reads them still.
	if h := cfg.Routes[0].SetHeaders; h["x-off"] != "false" || !cfg.RateLimit.Disabled {
		t.Errorf("set_headers %v, rate_limit.disabled %v", h, cfg.RateLimit.Disabled)
	}
	if on := cfg.Routes[0].Failover.On; len(on) != 2 || on[0] != "429" {
		t.Errorf("failover.on %q", on)
	}
	// Numbers read as YAML reads them: 0x1F90 and octal 010 too.
	if cfg.Server.Port != 8080 || cfg.Server.Timeout != 1500*time.Millisecond || cfg.Server.ReadTimeout != 16*time.Second || cfg.RateLimit.Default != 60 ||
		cfg.RateLimit.Burst != 1000 || cfg.RateLimit.Tenants["007"] != 8 {
		t.Errorf("numbers: port %d timeout %v default %d burst %d tenant %d", cfg.Server.Port, cfg.Server.Timeout,
			cfg.RateLimit.Default, cfg.RateLimit.Burst, cfg.RateLimit.Tenants["007"])
	}
	parseError(t, minimalRoute+"rate_limit: {default: 2.50}\n", `rate_limit.default="2.50": must be a whole number`)
}

// TestAuthEnvNotAKey: an auth_env that is not a variable's name (a provider
// key pasted in its place) is refused at load, and the error does not show
// it: it was accepted, logged in the "provider key not set" warning and sent
// to every caller in the route's 502.
func TestAuthEnvNotAKey(t *testing.T) {
	const pasted = "sk-proj-SECRETPASTEDKEY"
	for _, y := range []string{
		strings.Replace(minimalRoute, "auth_env: OPENAI_API_KEY", "auth_env: "+pasted, 1),
		`
routes:
  - name: pool
    path: /v1/chat/completions
    upstreams:
      - url: https://api.openai.com
        auth_env: ` + pasted + `
`,
	} {
		_, err := Parse([]byte(y))
		if err == nil || !strings.Contains(err.Error(), "auth_env: must name the environment variable") {
			t.Errorf("pasted key in auth_env: %v", err)
		} else if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("the error shows the value: %v", err)
		}
	}
}

// TestAuthEnvKubernetesNames: a variable named as Kubernetes' envFrom names
// them after a Secret's keys (openai-api-key, provider.key) is a valid
// auth_env; the check refuses only what cannot be one.
func TestAuthEnvKubernetesNames(t *testing.T) {
	for _, name := range []string{"OPENAI_API_KEY", "openai-api-key", "provider.key", "_K1"} {
		y := strings.Replace(minimalRoute, "auth_env: OPENAI_API_KEY", "auth_env: "+name, 1)
		if _, err := Parse([]byte(y)); err != nil {
			t.Errorf("auth_env %s: %v", name, err)
		}
	}
	for _, name := range []string{"sk-ant-api03-abc", "AIzaSyA-abc", "1KEY", "key with space", "a=b"} {
		y := strings.Replace(minimalRoute, "auth_env: OPENAI_API_KEY", "auth_env: \""+name+"\"", 1)
		if _, err := Parse([]byte(y)); err == nil || strings.Contains(err.Error(), name) {
			t.Errorf("auth_env %q: %v, want refused without showing it", name, err)
		}
	}
}

// TestKindNamedFirst: a misspelled kind on a WebSocket route is named, not
// its wss:// upstream (valid only for kind ws).
func TestKindNamedFirst(t *testing.T) {
	y := strings.Replace(minimalRoute, "upstream: https://api.openai.com", "upstream: wss://api.openai.com\n    kind: websocket", 1)
	_, err := Parse([]byte(y))
	if err == nil || !strings.Contains(err.Error(), "routes[0].kind=websocket: must be sse, raw or ws") {
		t.Errorf("misspelled kind: %v", err)
	}
}

// TestProviderKeyTrimmed: a provider key read from a secret file keeps
// its last line feed; sent as "Bearer KEY " the provider refused it. The
// white space around a key is dropped.
func TestProviderKeyTrimmed(t *testing.T) {
	// Proxy-Authorization takes a route's key (an authenticating proxy in
	// front of a self-hosted model): not refused as a field the relay drops.
	if _, err := Parse([]byte(minimalRoute + "    auth_header: Proxy-Authorization\n")); err != nil {
		t.Fatalf("auth_header Proxy-Authorization: %v", err)
	}
	r := startRelayWith(t, "", func(*Config) { t.Setenv("TEST_PROVIDER_KEY", " "+providerKey+"\r\n") })
	resp := r.post(t, "/v1/chat/completions", `{"stream":true}`, map[string]string{mockllm.HeaderChunks: "1"})
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
}

// TestHeaderNamesOnceEach: a route's headers (or set_headers) naming one
// field twice in different case are refused, both names shown: one of the
// two values went upstream, which one changing from start to start.
func TestHeaderNamesOnceEach(t *testing.T) {
	for _, field := range []string{"headers", "set_headers"} {
		y := minimalRoute + "    " + field + ": {X-P: one, x-p: two}\n"
		parseError(t, y, "routes[0]."+field+"=X-P, x-p: the same header name twice")
	}
}

// TestServerPortZeroRefused: an explicit server.port 0, in the file or the
// environment, is refused, as rate_limit.default's 0 is: it became 8080
// without a word.
func TestServerPortZeroRefused(t *testing.T) {
	parseError(t, minimalRoute+"server: {port: 0}\n", "server.port=0: must be 1..65535")
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(minimalRoute), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RELAY_SERVER__PORT", "0")
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "server.port=0: must be 1..65535") {
		t.Errorf("RELAY_SERVER__PORT=0: %v", err)
	}
}
