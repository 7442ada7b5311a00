package servicetest

import "os"

// clickHouseMallocConf is the jemalloc setting deployments/local/services.sh
// starts clickhouse-server with (see there and README, "ClickHouse's CPU
// per row"): large allocations stay in the ordinary arenas and freed pages
// are left lazily freed, instead of being faulted in and zeroed again at
// every insert and merge.
const clickHouseMallocConf = "oversize_threshold:0,muzzy_decay_ms:-1"

// clickHouseEnv is the environment of a clickhouse-server a test starts:
// the test's own plus MALLOC_CONF, so that tests run the server as the
// project's scripts do. RELAY_CLICKHOUSE_MALLOC_CONF replaces the setting,
// as it does for services.sh; set and empty, none is added.
func clickHouseEnv() []string {
	conf, set := os.LookupEnv("RELAY_CLICKHOUSE_MALLOC_CONF")
	if !set {
		conf = clickHouseMallocConf
	}
	env := os.Environ()
	if conf != "" {
		env = append(env, "MALLOC_CONF="+conf)
	}
	return env
}
