package app

import (
	"strings"
	"testing"
)

// TestClickHouseNodeListedTwiceSpelledDifferently: one node under two
// spellings in storage.clickhouse.urls (host case, the scheme's default port
// written out, http and https on one host:port) is refused like the same
// string twice. Before, only the same string (up to a trailing slash) was:
// the others started, both entries counted by relay_storage_node_errors_total
// under one node="host:port" label, two series with the same labels in
// /metrics, and failover "moved" to the node that had just failed.
func TestClickHouseNodeListedTwiceSpelledDifferently(t *testing.T) {
	route := "routes:\n  - name: a\n    path: /a\n    upstream: http://x\n"
	for _, pair := range [][2]string{
		{"http://ch-1:8123", "http://CH-1:8123"},
		{"http://ch-1", "http://ch-1:80"},
		{"http://ch-1:8123", "https://ch-1:8123"},
		{"http://[::1]:8123", "http://[::1]:8123/"},
	} {
		y := route + "storage:\n  clickhouse:\n    urls: [\"" + pair[0] + "\", \"http://ch-2:8123\", \"" + pair[1] + "\"]\n    cluster: relay_cluster\n"
		_, err := Parse([]byte(y))
		if err == nil || !strings.Contains(err.Error(), "storage.clickhouse.urls[2]") || !strings.Contains(err.Error(), "listed twice") {
			t.Errorf("urls %q: error %v; want storage.clickhouse.urls[2] ... listed twice", pair, err)
		}
	}
	// Different nodes stay different.
	if _, err := Parse([]byte(route + "storage:\n  clickhouse:\n    urls: [\"http://ch-1:8123\", \"http://ch-1:8124\", \"http://ch-10:8123\"]\n")); err != nil {
		t.Errorf("three nodes: %v", err)
	}
}
