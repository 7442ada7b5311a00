package quota

import (
	"os"
	"testing"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestMain stops the Redis Cluster that cluster_test.go starts once for the
// package.
func TestMain(m *testing.M) {
	code := m.Run()
	servicetest.StopRedisCluster()
	os.Exit(code)
}
