package app

import (
	"strings"
	"testing"
)

func TestClickHouseURLFromAddr(t *testing.T) {
	tests := []struct{ give, want string }{
		{"localhost:9000", "http://localhost:8123"},
		{"10.0.0.5:9000", "http://10.0.0.5:8123"},
		{"ch.internal", "http://ch.internal:8123"},
		{"tcp://ch.internal:9440", "http://ch.internal:8123"},
		{"[::1]:9000", "http://[::1]:8123"},
		{"::1", "http://[::1]:8123"},
		{":9000", "http://localhost:8123"},
	}
	for _, tt := range tests {
		if got := ClickHouseURLFromAddr(tt.give); got != tt.want {
			t.Errorf("ClickHouseURLFromAddr(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestClickHouseAddrConfig(t *testing.T) {
	f := func(storage, wantURL, wantSummary string) {
		t.Helper()
		cfg, err := Parse([]byte(minimalRoute + "storage:\n  clickhouse:\n" + storage))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.Storage.ClickHouse.URL; got != wantURL {
			t.Errorf("%s: url = %q, want %q", storage, got, wantURL)
		}
		if got := cfg.storageSummary(); !strings.Contains(got, wantSummary) {
			t.Errorf("%s: start-up storage= %q, want it to contain %q", storage, got, wantSummary)
		}
	}
	// The product description's native address: same host, HTTP port, said so.
	f("    addr: localhost:9000\n", "http://localhost:8123",
		"clickhouse http://localhost:8123 (HTTP port 8123 on the host of storage.clickhouse.addr localhost:9000")
	// url wins over addr.
	f("    addr: localhost:9000\n    url: http://127.0.0.1:18123\n", "http://127.0.0.1:18123", "clickhouse http://127.0.0.1:18123")
	// Neither: embedded mode.
	f("    database: relay\n", "", "spool files only")
}
