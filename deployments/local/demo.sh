#!/usr/bin/env bash
# demo.sh: bin/mockllm on :9090, the relay on :8080 in front of it, one
# streamed chat completion printed as it arrives, then five seconds of
# traffic while the relay's Prometheus metrics are printed each second, then
# both stop.
set -euo pipefail
cd "$(dirname "$0")/../.."
export DEMO_PROVIDER_KEY=sk-demo-provider
# The demo needs 127.0.0.1:8080 (the relay) and :9090 (the mock) free: a
# relay left running by `make run` holds 8080.
for port in 8080 9090; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "demo: port $port is in use (a relay from make run?); stop it and run make demo again" >&2
    exit 1
  fi
done
log=$(mktemp -d)
./bin/mockllm -addr 127.0.0.1:9090 -require-key "$DEMO_PROVIDER_KEY" 2>"$log/mockllm.log" &
mock=$!
./bin/relay -config configs/demo.yaml 2>"$log/relay.log" &
relay=$!
trap 'kill $relay $mock 2>/dev/null; wait 2>/dev/null || true; rm -rf "$log"' EXIT
ready=""
for _ in $(seq 1 50); do curl -fsS http://127.0.0.1:8080/readyz >/dev/null 2>&1 && { ready=1; break; }; sleep 0.1; done
if [ -z "$ready" ]; then
  echo "demo: the relay did not become ready; its log:" >&2
  cat "$log/relay.log" >&2
  exit 1
fi

echo "== POST /v1/chat/completions through the relay (10 chunks, 150 ms apart), as it arrives:"
curl -sS -N -i http://127.0.0.1:8080/v1/chat/completions \
  -H "Authorization: Bearer sk-relay-test-key-123" \
  -H "Content-Type: application/json" \
  -H "X-Tenant-ID: test-tenant" \
  -H "X-Mock-Chunks: 10" -H "X-Mock-Delay-Ms: 150" \
  -d '{"model":"gpt-4","messages":[{"role":"user","content":"Hello"}],"stream":true}'
echo
echo "== the relay's log line for it:"
sleep 0.2
grep 'msg=request' "$log/relay.log" | tail -1
id=$(grep 'msg=request' "$log/relay.log" | tail -1 | sed -n 's/.*request_id=\([0-9a-f]*\).*/\1/p')
if [ -n "$id" ]; then
  echo "(what was stored for it, once its block is written, about a second: bin/relay show -config configs/demo.yaml $id)"
fi

echo
echo "== 5 s of traffic (8 concurrent streams, 20 chunks 50 ms apart); /metrics each second:"
end=$((SECONDS + 5))
workers=()
for w in 1 2 3 4 5 6 7 8; do
  ( while [ $SECONDS -lt $end ]; do
      curl -sS -o /dev/null http://127.0.0.1:8080/v1/chat/completions \
        -H "Authorization: Bearer sk-relay-test-key-123" -H "Content-Type: application/json" \
        -H "X-Mock-Chunks: 20" -H "X-Mock-Delay-Ms: 50" -d '{"model":"gpt-4","stream":true}' || true
    done ) &
  workers+=($!)
done
for i in 1 2 3 4 5 6; do
  sleep 1
  echo "-- t=${i}s"
  curl -sS http://127.0.0.1:8080/metrics |
    grep -E '^(relay_requests_total\{route="openai",status="200"\}|relay_active_connections\{route="openai"\}|relay_ttft_ms_count\{route="openai"\}|relay_storage_rows_spooled_total)' || true
done
wait "${workers[@]}"
