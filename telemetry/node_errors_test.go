package telemetry

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/chlog"
)

// TestStorageNodeErrors: one series per configured ClickHouse node.
func TestStorageNodeErrors(t *testing.T) {
	m := New([]string{"a"})
	m.SetStorageNodeErrors(func() []chlog.NodeErrors {
		return []chlog.NodeErrors{{Node: "127.0.0.1:8123", Errors: 3}, {Node: "ch-2:8123", Errors: 0}}
	})
	var buf bytes.Buffer
	m.WritePrometheus(&buf)
	for _, want := range []string{
		"relay_storage_node_errors_total{node=\"127.0.0.1:8123\"} 3\n",
		"relay_storage_node_errors_total{node=\"ch-2:8123\"} 0\n",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}
