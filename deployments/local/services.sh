#!/usr/bin/env bash
# services.sh starts (or stops) the Redis and ClickHouse servers that the test
# suite, the demo and the benchmarks use, on loopback ports of their own so a
# developer's system services are left alone. It installs the Debian packages
# when they are missing and it runs as root.
#
#   deployments/local/services.sh start   # install if needed, start, wait until ready
#   deployments/local/services.sh stop
#   deployments/local/services.sh env     # print the variables the tests read
set -euo pipefail

dir=${RELAY_SERVICES_DIR:-/tmp/stream-relay-services}
redis_port=${RELAY_REDIS_PORT:-16379}
ch_http_port=${RELAY_CLICKHOUSE_HTTP_PORT:-18123}
ch_tcp_port=${RELAY_CLICKHOUSE_TCP_PORT:-19000}
ch_inter_port=${RELAY_CLICKHOUSE_INTERSERVER_PORT:-19009}

log() { printf 'services: %s\n' "$*" >&2; }

install_missing() {
	local pkgs=()
	command -v redis-server >/dev/null || pkgs+=(redis-server)
	command -v clickhouse-server >/dev/null || pkgs+=(clickhouse-server clickhouse-client)
	command -v prometheus >/dev/null || pkgs+=(prometheus) # app/metrics_test.go runs it
	command -v curl >/dev/null || pkgs+=(curl)             # readiness checks below
	# The ClickHouse cluster tests (internal/servicetest) start ZooKeeper
	# themselves; without recommends these two add no desktop Java.
	local lean=()
	[ -f /usr/share/java/zookeeper.jar ] || lean+=(zookeeper)
	command -v java >/dev/null || lean+=(default-jre-headless)
	[ ${#pkgs[@]} -eq 0 ] && [ ${#lean[@]} -eq 0 ] && return 0
	if [ "$(id -u)" != 0 ]; then
		log "missing ${pkgs[*]} ${lean[*]} and not root: install them with apt-get"
		return 1
	fi
	log "installing ${pkgs[*]} ${lean[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	[ ${#pkgs[@]} -eq 0 ] || apt-get install -y -qq "${pkgs[@]}" >/dev/null
	[ ${#lean[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null
}

redis_up() { redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; }
ch_up() { curl -fsS "http://127.0.0.1:$ch_http_port/ping" 2>/dev/null | grep -q Ok; }

start_redis() {
	if redis_up; then return 0; fi
	mkdir -p "$dir/redis"
	redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" \
		--save '' --appendonly no --daemonize yes \
		--pidfile "$dir/redis.pid" --logfile "$dir/redis.log"
	for _ in $(seq 1 100); do redis_up && { log "redis ready on 127.0.0.1:$redis_port"; return 0; }; sleep 0.1; done
	log "redis did not start; see $dir/redis.log"
	return 1
}

start_clickhouse() {
	if ch_up; then return 0; fi
	mkdir -p "$dir/clickhouse/tmp" "$dir/clickhouse/user_files" "$dir/clickhouse/format_schemas"
	(
		cd "$dir/clickhouse"
		nohup clickhouse-server --config-file=/etc/clickhouse-server/config.xml -- \
			--listen_host=127.0.0.1 --http_port="$ch_http_port" --tcp_port="$ch_tcp_port" \
			--interserver_http_port="$ch_inter_port" \
			--path="$dir/clickhouse/" --tmp_path="$dir/clickhouse/tmp/" \
			--user_files_path="$dir/clickhouse/user_files/" \
			--format_schema_path="$dir/clickhouse/format_schemas/" \
			--logger.log="$dir/clickhouse/server.log" --logger.errorlog="$dir/clickhouse/error.log" \
			>"$dir/clickhouse/stdout.log" 2>&1 &
		echo $! >"$dir/clickhouse.pid"
	)
	for _ in $(seq 1 300); do ch_up && { log "clickhouse ready on http://127.0.0.1:$ch_http_port"; return 0; }; sleep 0.1; done
	log "clickhouse did not start; see $dir/clickhouse/error.log"
	tail -20 "$dir/clickhouse/error.log" >&2 || true
	return 1
}

stop_all() {
	if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; rm -f "$dir/redis.pid"; fi
	if [ -f "$dir/clickhouse.pid" ]; then kill "$(cat "$dir/clickhouse.pid")" 2>/dev/null || true; rm -f "$dir/clickhouse.pid"; fi
}

print_env() {
	echo "export RELAY_TEST_REDIS_ADDR=127.0.0.1:$redis_port"
	echo "export RELAY_TEST_CLICKHOUSE_URL=http://127.0.0.1:$ch_http_port"
}

case "${1:-start}" in
start) install_missing; start_redis; start_clickhouse ;;
stop) stop_all ;;
env) print_env ;;
*) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
