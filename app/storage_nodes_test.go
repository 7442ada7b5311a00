package app

import (
	"strings"
	"testing"
)

// TestClickHouseNodesConfig: storage.clickhouse.urls and cluster load,
// and their errors name the field.
func TestClickHouseNodesConfig(t *testing.T) {
	route := "routes:\n  - name: a\n    path: /a\n    upstream: http://x\n"
	cfg, err := Parse([]byte(route + "storage:\n  clickhouse:\n    urls: [\"http://ch-1:8123\", \"http://ch-2:8123\"]\n    cluster: relay_cluster\n"))
	if err != nil {
		t.Fatal(err)
	}
	ch := cfg.Storage.ClickHouse
	if len(ch.URLs) != 2 || ch.Cluster != "relay_cluster" || ch.URL != "" {
		t.Fatalf("clickhouse config %+v", ch)
	}
	if s := cfg.storageSummary(); s != "clickhouse cluster relay_cluster via http://ch-1:8123, http://ch-2:8123" {
		t.Errorf("summary %q", s)
	}
	tests := []struct{ name, yaml, want string }{
		{"relative url", "    urls: [\"http://a:1\", \"ch-2:8123\"]\n", "storage.clickhouse.urls[1]=ch-2:8123"},
		{"twice", "    urls: [\"http://a:1\", \"http://a:1/\"]\n", "storage.clickhouse.urls[1]=http://a:1/: listed twice"},
		{"url not among urls", "    url: http://b:1\n    urls: [\"http://a:1\"]\n", "storage.clickhouse.url=http://b:1: not among storage.clickhouse.urls"},
		{"bad cluster", "    urls: [\"http://a:1\"]\n    cluster: \"c; DROP\"\n", "storage.clickhouse.cluster=c; DROP"},
		{"cluster without nodes", "    cluster: relay_cluster\n", "storage.clickhouse.cluster=relay_cluster: needs storage.clickhouse.urls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(route + "storage:\n  clickhouse:\n" + tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want it to name %q", err, tt.want)
			}
		})
	}
}
