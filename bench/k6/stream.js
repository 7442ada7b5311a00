// k6 script: streamed chat completions through the relay at a fixed arrival
// rate (k6 is not installed on the bench machines; bench/loadgen is what
// `make bench` uses). k6 reads a response whole, so it reports the time to
// the response headers (http_req_waiting) and the whole stream
// (http_req_duration), not each chunk.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=500 -e DURATION=30s bench/k6/stream.js
//
// Environment: BASE_URL (default http://127.0.0.1:8080), RELAY_KEY
// (sk-relay-bench), CHUNKS (20), DELAY_MS (5), RATE (streams/s, 200),
// DURATION (30s), VUS (pre-allocated virtual users, 200).
import http from 'k6/http';
import { check } from 'k6';
import { Trend } from 'k6/metrics';

const base = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const key = __ENV.RELAY_KEY || 'sk-relay-bench';
const chunks = __ENV.CHUNKS || '20';
const delay = __ENV.DELAY_MS || '5';

const ttfb = new Trend('stream_ttfb', true);

export const options = {
  scenarios: {
    streams: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 200),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: Number(__ENV.VUS || 200),
      maxVUs: Number(__ENV.VUS || 200) * 4,
    },
  },
  thresholds: {
    checks: ['rate>0.999'],
  },
  summaryTrendStats: ['p(50)', 'p(90)', 'p(99)', 'p(99.9)', 'max'],
};

const body = JSON.stringify({
  model: 'bench',
  stream: true,
  messages: [{ role: 'user', content: 'hi' }],
});

export default function () {
  const res = http.post(`${base}/v1/chat/completions`, body, {
    headers: {
      Authorization: `Bearer ${key}`,
      'Content-Type': 'application/json',
      'X-Mock-Chunks': chunks,
      'X-Mock-Delay-Ms': delay,
    },
    timeout: '60s',
  });
  ttfb.add(res.timings.waiting);
  check(res, {
    'status 200': (r) => r.status === 200,
    'stream ended with [DONE]': (r) => typeof r.body === 'string' && r.body.includes('data: [DONE]'),
  });
}
