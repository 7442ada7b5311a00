package app

import (
	"os"
	"testing"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestMain stops the clusters the tests start once for the package: the
// Redis Cluster (cluster_redis_test.go, chaos_cluster_test.go) and the
// ClickHouse cluster.
func TestMain(m *testing.M) {
	code := m.Run()
	servicetest.StopClickHouseCluster()
	servicetest.StopRedisCluster()
	os.Exit(code)
}
