package usage

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzIndexKey: indexKey finds the place bytes.Index finds, for every key
// the rules search for.
func FuzzIndexKey(f *testing.F) {
	for _, s := range []string{openAIStream, anthropicStream, `"usage"`, `usage"`, `""usage"`, `x"usage`, `"usageMetadata":{}`, `\"usage"`} {
		f.Add([]byte(s))
	}
	var keys [][]byte
	for a := range API(len(apiNames)) {
		r := rulesFor(a)
		keys = append(keys, r.usage...)
		if r.flatIn != nil {
			keys = append(keys, r.flatIn, r.flatOut)
		}
		for _, k := range r.content {
			keys = append(keys, k.key)
		}
	}
	keys = append(keys, []byte(`"`), []byte(`x`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, k := range keys {
			if got, want := indexKey(data, k), bytes.Index(data, k); got != want {
				t.Fatalf("indexKey(%q, %q) = %d, bytes.Index %d", data, k, got, want)
			}
		}
	})
}

// FuzzGenericScan: the scan of several container keys (Generic), which
// keeps each key's next place, counts what a scan that searches every key
// again after each object counts.
func FuzzGenericScan(f *testing.F) {
	for _, s := range []string{openAIStream, anthropicStream,
		`{"usage":{"prompt_tokens":1,"completion_tokens":2}}{"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":4}}`,
		`"usageMetadata":{"promptTokenCount":3,"usage":{"input_tokens":7}},"usage":{"output_tokens":5}`,
		`"usage":{"a":"\"usage\":{\"input_tokens\":9}"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got, want Tokens
		got.Scan(Generic, data)
		want.shape = shapeOf(data)
		r := rulesFor(Generic)
		for off := 0; off < len(data); {
			best, bestKey := -1, []byte(nil)
			for _, k := range r.usage {
				if j := bytes.Index(data[off:], k); j >= 0 && (best < 0 || j < best) {
					best, bestKey = j, k
				}
			}
			if best < 0 {
				break
			}
			off = want.scanAt(r, bestKey, data, off+best)
		}
		if got != want {
			t.Fatalf("scan of %q: %+v, searching again after each object %+v", data, got, want)
		}
	})
}

// BenchmarkScanChat: the usage scan the relay runs when a chat stream ends,
// over a 20-chunk stream without usage (what the benchmarks' mock sends).
func BenchmarkScanChat(b *testing.B) {
	data := []byte(strings.Repeat(`data: {"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1796241511,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"tok0 "},"finish_reason":null}]}`+"\n\n", 20) + "data: [DONE]\n\n")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var t Tokens
		t.Scan(OpenAIChat, data)
	}
}

// TestUsageKeysBounded: no API's rules have more container keys than the
// scan keeps places for (a key past maxUsageKeys would go unsearched).
func TestUsageKeysBounded(t *testing.T) {
	for a := range API(len(apiNames)) {
		if n := len(rulesFor(a).usage); n > maxUsageKeys {
			t.Errorf("%v: %d usage keys, the scan keeps %d", a, n, maxUsageKeys)
		}
	}
}
