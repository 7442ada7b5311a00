package app

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/chlog"
)

// TestConfigCheckedAtLoad: settings the storage and the limiter check
// again are refused when the file loads, by their configuration keys
// (config: section.key=value), not later by the package's option name
// once storage has started (spool lock taken, tables made).
func TestConfigCheckedAtLoad(t *testing.T) {
	base := "routes:\n  - name: a\n    path: /a\n    upstream: http://x\n"
	tests := []struct{ name, yaml, want string }{
		{"negative redis timeout", "rate_limit: {redis_timeout: -1s}\n",
			"config: rate_limit.redis_timeout=-1s: must not be negative"},
		{"negative tenant tokens", "rate_limit: {tenant_tokens: {acme: -5}}\n",
			"config: rate_limit.tenant_tokens.acme=-5: must be >= 0 (0 = off)"},
		{"database not a name", "storage: {clickhouse: {database: \"bad-db\"}}\n",
			`config: storage.clickhouse.database="bad-db": ` + chlog.IdentRule},
		{"table not a name", "storage: {clickhouse: {table: \"1logs\"}}\n",
			`config: storage.clickhouse.table="1logs": ` + chlog.IdentRule},
		{"buffer below the minimum", "storage: {max_buffer_bytes: 1000}\n",
			"config: storage.max_buffer_bytes=1000: must be at least "},
		{"negative buffer", "storage: {max_buffer_bytes: -1}\n",
			"config: storage.max_buffer_bytes=-1: must be at least "},
		{"empty redis address", "storage: {redis: {addr: \",\"}}\n",
			"config: storage.redis.addr=[invalid]: empty address in list"},
		{"empty redis address in a list", "storage: {redis: {addr: \"10.0.0.1:6379, ,10.0.0.2:6379\"}}\n",
			"config: storage.redis.addr=[invalid]: empty address in list"},
		// chlog.NodeKey: the loopback host however written is one node.
		{"loopback node twice", "storage: {clickhouse: {urls: ['http://localhost:8123', 'http://127.0.0.1:8123']}}\n",
			"config: storage.clickhouse.urls[1]=http://127.0.0.1:8123: listed twice"},
		{"loopback node twice, IPv6", "storage: {clickhouse: {urls: ['http://127.0.0.1:8123', 'http://[::1]:8123/']}}\n",
			"config: storage.clickhouse.urls[1]=http://[::1]:8123/: listed twice"},
		{"cluster not a name", "storage: {clickhouse: {url: 'http://a:8123', cluster: 'my-cluster'}}\n",
			"config: storage.clickhouse.cluster=my-cluster: " + chlog.IdentRule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseError(t, base+tt.yaml, tt.want)
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("error %q, want it to begin %q", got, tt.want)
			}
		})
	}
	// What the checks let pass.
	for _, ok := range []string{
		"rate_limit: {tenant_tokens: {acme: 0, other: 5000}}\n",
		"storage: {clickhouse: {database: logs_2, table: _rows}}\n",
		"storage: {max_buffer_bytes: " + strconv.Itoa(chlog.MinBufferBytes) + "}\n",
		"storage: {redis: {addr: '10.0.0.1:6379, 10.0.0.2:6379'}}\n",
		"storage: {clickhouse: {urls: ['http://localhost:8123', 'http://127.0.0.2:8123', 'http://localhost:8124']}}\n",
	} {
		if _, err := Parse([]byte(base + ok)); err != nil {
			t.Errorf("%s: %v", strings.TrimSpace(ok), err)
		}
	}
}

// TestUnknownKeys: a key that names no setting is refused by its full
// path, every one of them.
func TestUnknownKeys(t *testing.T) {
	base := "routes:\n  - name: a\n    path: /a\n    upstream: http://x\n"
	tests := []struct{ name, yaml, want string }{
		{"top level", base + "server2:\n  port: 80\n", "config: unknown key server2"},
		{"nested", base + "storage:\n  clickhouse:\n    usr: default\n", "config: unknown key storage.clickhouse.usr"},
		{"in a route", "routes:\n  - name: a\n    path: /a\n    upstrem: http://x\n    upstream: http://x\n", "config: unknown key routes[0].upstrem"},
		{"several", base + "server2: 1\nstorage:\n  clickhouse:\n    usr: default\n    pasword: x\n",
			"config: unknown keys server2, storage.clickhouse.pasword, storage.clickhouse.usr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseError(t, tt.yaml, tt.want); got != tt.want {
				t.Errorf("error %q, want %q", got, tt.want)
			}
		})
	}
	// From the environment: the key the variable names.
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte(base), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RELAY_SERVER__PROT", "9000")
	if _, err := Load(path); err == nil || err.Error() != "config: unknown key server.prot" {
		t.Errorf("RELAY_SERVER__PROT: %v, want config: unknown key server.prot", err)
	}
}

// TestMetricsAddrNotTheRelaysOwn: metrics.addr on the relay's own
// address is refused at load, naming both settings.
func TestMetricsAddrNotTheRelaysOwn(t *testing.T) {
	base := "routes:\n  - name: a\n    path: /a\n    upstream: http://x\n"
	for _, tt := range []struct{ server, metrics string }{
		{"  host: 127.0.0.1\n  port: 19419\n", "127.0.0.1:19419"},
		{"  port: 19419\n", "127.0.0.1:19419"},           // the relay on every interface
		{"  host: 127.0.0.1\n  port: 19419\n", ":19419"}, // metrics on every interface
		{"  host: localhost\n  port: 19419\n", "127.0.0.1:19419"},
		{"  host: ::1\n  port: 19419\n", "[0:0:0:0:0:0:0:1]:19419"},
		{"", "0.0.0.0:8080"}, // the default port
	} {
		yaml := base + "server:\n" + tt.server + "metrics:\n  addr: '" + tt.metrics + "'\n"
		got := parseError(t, yaml, "config: metrics.addr="+tt.metrics+": is the relay's own address (server.host:server.port ")
		if !strings.Contains(got, "metrics.addr") || !strings.Contains(got, "server.host:server.port") {
			t.Errorf("%q does not name both settings", got)
		}
	}
	for _, tt := range []struct{ server, metrics string }{
		{"  host: 127.0.0.1\n  port: 19419\n", "127.0.0.1:19420"},
		{"  host: 127.0.0.1\n  port: 19419\n", "127.0.0.2:19419"},
		{"  host: 127.0.0.1\n  port: 19419\n", "[::1]:19419"},
	} {
		yaml := base + "server:\n" + tt.server + "metrics:\n  addr: '" + tt.metrics + "'\n"
		if _, err := Parse([]byte(yaml)); err != nil {
			t.Errorf("metrics.addr %s beside %q: %v", tt.metrics, tt.server, err)
		}
	}
	parseError(t, base+"metrics:\n  addr: '9090'\n", "config: metrics.addr=9090: must be host:port")
}
