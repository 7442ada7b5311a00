package main

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// poolSize is how many distinct rows are generated; the rows of a run cycle
// through them, each with its own request id.
const poolSize = 64

var words = strings.Fields("the a of to and in is it that for you was with on as have but be they at one this from or had by not word what all were we when your can said there use an each which she do how their if will up other about out many then them these so some her would make like him into time has look two more write go see number no way could people my than first water been call who oil its now find long down day did get come made may part")

// makeRows returns n realistic rows of a chat completion streamed as 20
// SSE chunks with full capture: a JSON request body of 1-2 KiB, redacted
// header objects, ~200-byte chunks of varied words (so that compression
// sees text, not one repeated row). Each row has its own id.
func makeRows(n int, seed uint64) []*record.Record {
	rng := rand.New(rand.NewPCG(seed, 7))
	start := time.Now().Truncate(time.Second)
	pool := make([]*record.Record, poolSize)
	for i := range pool {
		pool[i] = poolRow(rng, start)
	}
	rows := make([]*record.Record, n)
	for i := range rows {
		r := new(record.Record)
		*r = *pool[i%poolSize] // shares the captured bytes; read only
		r.ID = rowID(seed, i)
		rows[i] = r
	}
	return rows
}

func poolRow(rng *rand.Rand, start time.Time) *record.Record {
	r := record.Acquire(4 << 20)
	r.Start = start
	r.Route, r.Kind, r.Capture = "openai", record.KindSSE, true
	r.Tenant, r.KeyID, r.Instance = fmt.Sprintf("tenant-%d", rng.IntN(20)), fmt.Sprintf("k%05x", rng.IntN(1<<20)), "relay-1"
	r.Method, r.Path, r.Upstream = "POST", "/v1/chat/completions", "https://api.openai.com"
	r.Status = 200
	r.TTFB = time.Duration(80+rng.IntN(100)) * time.Millisecond
	r.TTFT = r.TTFB + time.Duration(rng.IntN(60))*time.Millisecond
	r.Duration = 2*time.Second + time.Duration(rng.IntN(1000))*time.Millisecond
	r.Model, r.TokensIn, r.TokensOut = "gpt-4o", int64(300+rng.IntN(200)), 20
	r.ClientIP, r.UserAgent = fmt.Sprintf("10.0.%d.%d", rng.IntN(255), rng.IntN(255)), "OpenAI/Python 1.54.4"
	r.RequestHeaders = append(r.RequestHeaders, `{"accept":"application/json","accept-encoding":"gzip, deflate","authorization":"[redacted]","content-type":"application/json","user-agent":"OpenAI/Python 1.54.4","x-stainless-arch":"x64","x-stainless-lang":"python","x-stainless-os":"Linux","x-stainless-package-version":"1.54.4","x-stainless-runtime":"CPython","x-stainless-runtime-version":"3.12.3","x-request-id":"`...)
	r.RequestHeaders = append(r.RequestHeaders, fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64())...)
	r.RequestHeaders = append(r.RequestHeaders, `"}`...)
	r.ResponseHeaders = append(r.ResponseHeaders, fmt.Sprintf(`{"cache-control":"no-cache","content-type":"text/event-stream; charset=utf-8","date":"Mon, 30 Nov 2026 18:00:00 GMT","openai-organization":"org-%08x","openai-processing-ms":"%d","openai-version":"2020-10-01","x-ratelimit-limit-requests":"10000","x-ratelimit-remaining-requests":"9999","x-ratelimit-reset-requests":"6ms","x-request-id":"req_%016x"}`, rng.Uint32(), 100+rng.IntN(900), rng.Uint64())...)
	var body strings.Builder
	body.WriteString(`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"temperature":0.7,"messages":[{"role":"system","content":"You are a helpful assistant. Answer briefly and precisely."}`)
	for body.Len() < 1024+rng.IntN(1024) {
		body.WriteString(`,{"role":"user","content":"`)
		for range 12 + rng.IntN(20) {
			body.WriteString(words[rng.IntN(len(words))])
			body.WriteByte(' ')
		}
		body.WriteString(`"}`)
	}
	body.WriteString(`]}`)
	r.SetRequestBody([]byte(body.String()))
	r.BytesIn = int64(len(r.RequestBody))
	id := fmt.Sprintf("chatcmpl-%016x", rng.Uint64())
	for c := range 20 {
		chunk := fmt.Sprintf("data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":%d,\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" %s %s\"},\"finish_reason\":null}]}\n\n",
			id, start.Unix(), words[rng.IntN(len(words))], words[rng.IntN(len(words))])
		r.AddChunk([]byte(chunk), r.TTFT+time.Duration(20*c)*time.Millisecond)
	}
	return r
}

// rowID is the request id of row i of a run: lower-case hex, unique per
// seed and row.
func rowID(seed uint64, i int) [record.IDLen]byte {
	var id [record.IDLen]byte
	var raw [16]byte
	for k := range 8 {
		raw[k] = byte(seed >> (8 * k))
		raw[8+k] = byte(uint64(i) >> (8 * k))
	}
	hex.Encode(id[:], raw[:])
	return id
}

// rowBytes is the mean encoded size of rows: the Native bytes per row.
func rowBytes(blocks [][]byte, rows int) float64 {
	n := 0
	for _, b := range blocks {
		n += len(b)
	}
	return float64(n) / float64(rows)
}
