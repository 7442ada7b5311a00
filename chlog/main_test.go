package chlog

import (
	"os"
	"testing"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestMain stops the ClickHouse cluster (ZooKeeper and four servers) that
// the cluster tests start once for the whole package.
func TestMain(m *testing.M) {
	code := m.Run()
	servicetest.StopClickHouseCluster()
	os.Exit(code)
}
