-- wrk script: one streamed chat completion per request (20 chunks by default).
-- Usage: wrk -s bench/wrk/sse.lua http://127.0.0.1:8080/v1/chat/completions
wrk.method = "POST"
wrk.body = '{"model":"bench","stream":true,"messages":[{"role":"user","content":"hi"}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("RELAY_KEY") or "sk-relay-bench")
wrk.headers["X-Mock-Chunks"] = os.getenv("CHUNKS") or "20"
wrk.headers["X-Mock-Delay-Ms"] = os.getenv("DELAY_MS") or "0"

function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%d duration_s=%.2f rps=%.0f errors=%d non2xx=%d p50_ms=%.2f p99_ms=%.2f\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
