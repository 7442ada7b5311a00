#!/usr/bin/env bash
# services.sh starts (or stops) the Redis and ClickHouse servers that the test
# suite, the demo and the benchmarks use, on loopback ports of their own so a
# developer's system services are left alone. It installs the Debian packages
# when they are missing and it runs as root.
#
#   deployments/local/services.sh start   # install if needed, start, wait until ready
#   deployments/local/services.sh stop
#   deployments/local/services.sh env     # print the variables the tests read
#
# RELAY_CLICKHOUSE_OWN_FS=1 (make bench sets it) puts ClickHouse's data on a
# filesystem of its own, as a production server has its own disk: see own_fs.
set -euo pipefail
# Debian puts the servers in /usr/sbin, which a user's PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

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
	command -v gcc >/dev/null || pkgs+=(gcc libc6-dev)     # go test -race needs cgo
	# app/sdk_test.go streams through the relay with the official SDKs
	# (make test runs npm ci in deployments/sdkcheck).
	command -v node >/dev/null || pkgs+=(nodejs)
	command -v npm >/dev/null || pkgs+=(npm)
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
	# The packages' own system services (Redis on 6379, ClickHouse on
	# 8123/9000, Prometheus on 9090, ZooKeeper) are not started by the
	# install: policy-rc.d says no while it runs. The tests start their
	# own servers on ports of their own.
	local policy=/usr/sbin/policy-rc.d own_policy=
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
	fi
	local rc=0
	apt-get update -qq >/dev/null || rc=$?
	[ $rc -ne 0 ] || [ ${#pkgs[@]} -eq 0 ] || apt-get install -y -qq "${pkgs[@]}" >/dev/null || rc=$?
	[ $rc -ne 0 ] || [ ${#lean[@]} -eq 0 ] || apt-get install -y -qq --no-install-recommends "${lean[@]}" >/dev/null || rc=$?
	[ -z "$own_policy" ] || rm -f "$policy"
	# Nor do those installed here start at the next boot.
	if [ $rc -eq 0 ] && [ -d /run/systemd/system ]; then
		local units=() p
		for p in "${pkgs[@]}" "${lean[@]}"; do
			case $p in
			redis-server | clickhouse-server | zookeeper) units+=("$p") ;;
			prometheus) units+=(prometheus prometheus-node-exporter) ;;
			esac
		done
		[ ${#units[@]} -eq 0 ] || systemctl disable --quiet "${units[@]}" 2>/dev/null || true
	fi
	return $rc
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

# own_fs loop-mounts a fresh ext4 image (sparse, RELAY_CLICKHOUSE_FS_SIZE,
# default 16G) at $dir/clickhouse when RELAY_CLICKHOUSE_OWN_FS=1, restarting
# a server that runs on the plain directory. Every insert and every merge
# writes a part of ~76 files, and on a root filesystem shared with builds
# and tests ext4's inode allocator can take most of the server's CPU:
# perf on this project's machine put 54% of ClickHouse's samples in
# ext4_create (find_inode_bit, recently_deleted) during the production-shape
# load, 2% on a filesystem of its own. Without root or loop devices the data
# stays in the directory, and the log says so.
own_fs() {
	[ "${RELAY_CLICKHOUSE_OWN_FS:-0}" = 1 ] || return 0
	mountpoint -q "$dir/clickhouse" 2>/dev/null && return 0
	if [ "$(id -u)" != 0 ]; then
		log "clickhouse data stays in $dir/clickhouse: a filesystem of its own needs root"
		return 0
	fi
	if ch_up; then
		log "restarting clickhouse on a filesystem of its own"
		stop_clickhouse
		if ch_up; then
			log "a clickhouse this script did not start answers on $ch_http_port; its data stays where it is"
			return 0
		fi
	fi
	local img=$dir/clickhouse.img
	mkdir -p "$dir/clickhouse"
	rm -f "$img"
	if truncate -s "${RELAY_CLICKHOUSE_FS_SIZE:-16G}" "$img" && mkfs.ext4 -q -F "$img" >/dev/null 2>&1 &&
		mount -o loop "$img" "$dir/clickhouse" 2>/dev/null; then
		log "clickhouse data on a filesystem of its own ($img)"
	else
		rm -f "$img"
		log "clickhouse data stays in $dir/clickhouse: the loop mount failed"
	fi
}

# ch_malloc_conf tunes the jemalloc that Debian's clickhouse-server links.
# By default jemalloc gives allocations of 8 MiB and more (an insert's
# column of captured chunks, a merge's buffers) an arena of their own whose
# pages go back to the kernel as soon as they are freed, and it hands the
# others back within seconds: the server faulted the same pages in again,
# zeroed, at every insert and merge. oversize_threshold:0 keeps large
# allocations in the ordinary arenas; muzzy_decay_ms:-1 leaves freed pages
# lazily freed (MADV_FREE: the kernel takes them back when it needs memory,
# and until then they still count in RSS) instead of unmapped. Measured
# with the relay's production shape (64 connections, 20-chunk streams, rows
# into this server, 8-26 s windows): server CPU 43-47 -> 31-37 us a row
# with 2000-row blocks, 32-43 -> 20-27 us with 20000-row blocks; RSS 1.6
# GiB after a few minutes of that load (README, "ClickHouse's CPU per
# row").
ch_malloc_conf=${RELAY_CLICKHOUSE_MALLOC_CONF-oversize_threshold:0,muzzy_decay_ms:-1}

start_clickhouse() {
	own_fs
	if ch_up; then return 0; fi
	mkdir -p "$dir/clickhouse/tmp" "$dir/clickhouse/user_files" "$dir/clickhouse/format_schemas"
	(
		cd "$dir/clickhouse"
		[ -z "$ch_malloc_conf" ] || export MALLOC_CONF="$ch_malloc_conf"
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

# stop_clickhouse stops the server (waiting up to 30 s for it to exit) and
# unmounts its own filesystem, if it has one.
stop_clickhouse() {
	local pid
	if [ -f "$dir/clickhouse.pid" ]; then
		pid=$(cat "$dir/clickhouse.pid")
		kill "$pid" 2>/dev/null || true
		for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		rm -f "$dir/clickhouse.pid"
	fi
	if mountpoint -q "$dir/clickhouse" 2>/dev/null; then
		umount "$dir/clickhouse" && rm -f "$dir/clickhouse.img"
	fi
}

stop_all() {
	if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; rm -f "$dir/redis.pid"; fi
	stop_clickhouse
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
