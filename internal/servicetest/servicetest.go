// Package servicetest finds the real Redis and ClickHouse servers that
// `make test` starts (deployments/local/services.sh) for tests that need them.
//
// A test that needs a server calls Redis(t) or ClickHouse(t). When the server
// cannot be reached the test fails if the CI environment variable is set and
// is skipped, loudly, on a developer's machine.
package servicetest

import (
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

// Default addresses match deployments/local/services.sh.
const (
	defaultRedisAddr     = "127.0.0.1:16379"
	defaultClickHouseURL = "http://127.0.0.1:18123"
)

// RedisAddr returns the address from RELAY_TEST_REDIS_ADDR or the default,
// without checking it.
func RedisAddr() string {
	if v := os.Getenv("RELAY_TEST_REDIS_ADDR"); v != "" {
		return v
	}
	return defaultRedisAddr
}

// ClickHouseURL returns the HTTP URL from RELAY_TEST_CLICKHOUSE_URL or the
// default, without checking it.
func ClickHouseURL() string {
	if v := os.Getenv("RELAY_TEST_CLICKHOUSE_URL"); v != "" {
		return v
	}
	return defaultClickHouseURL
}

// Redis returns the address of a reachable Redis server.
func Redis(t testing.TB) string {
	t.Helper()
	addr := RedisAddr()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		unavailable(t, "redis", addr, err)
		return ""
	}
	_ = c.Close()
	return addr
}

// Transport is the HTTP transport of this package's calls to the servers,
// for tests' own queries too: without keep-alive. ClickHouse closes an idle
// connection after its keep_alive_timeout (3 s on 18.16); a POST that goes
// out on one just as it closes fails with "connection reset by peer" (seen
// in CI) and Go does not retry a POST.
var Transport http.RoundTripper = &http.Transport{DisableKeepAlives: true}

// HTTP is a client on Transport without a timeout of its own.
var HTTP = &http.Client{Transport: Transport}

// ClickHouse returns the HTTP URL of a reachable ClickHouse server.
func ClickHouse(t testing.TB) string {
	t.Helper()
	url := ClickHouseURL()
	c := http.Client{Transport: Transport, Timeout: 3 * time.Second}
	resp, err := c.Get(url + "/ping")
	if err != nil {
		unavailable(t, "clickhouse", url, err)
		return ""
	}
	_ = resp.Body.Close()
	return url
}

func unavailable(t testing.TB, name, addr string, err error) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s at %s is required in CI and unreachable: %v (make test starts it)", name, addr, err)
	}
	t.Skipf("SKIPPED: %s at %s unreachable (%v); run `make test` or deployments/local/services.sh start", name, addr, err)
}
