package mockllm

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestParseRequest: the fields parseRequest reads are the ones
// encoding/json reads from the same body, and a body encoding/json
// refuses for its shape or for a field's type is refused too.
func TestParseRequest(t *testing.T) {
	long := strings.Repeat(`ab\"c{[ `, 5000)
	valid := []string{
		`{}`,
		` { "model" : "gpt-4o" , "stream" : true } `,
		`{"messages":[{"role":"user","content":"` + long + `"}],"model":"m","stream":false}`,
		`{"stream_options":{"include_usage":true},"Model":"upper","response_format":"json"}`,
		`{"n":1.5e3,"x":null,"y":[1,[2,{"z":"}"}]],"model":"a\"b\\"}`,
		`{"model":"\u00e9","tools":{"a":{"b":[]}},"stream":true}`,
	}
	for _, body := range valid {
		var got, want apiRequest
		if err := json.Unmarshal([]byte(body), &want); err != nil {
			t.Fatalf("%.60s: encoding/json: %v", body, err)
		}
		if err := parseRequest([]byte(body), &got); err != nil {
			t.Errorf("%.60s: %v", body, err)
			continue
		}
		if got != want {
			t.Errorf("%.60s: got %+v, want %+v", body, got, want)
		}
	}
	invalid := []string{
		``, `[]`, `"x"`, `{`, `{"model"}`, `{"model":}`, `{"model":"a"`, `{"model":"a",}`,
		`{"model":"a"} x`, `{"messages":[{"content":"x"}`, `{"messages":"not closed}`,
		`{"model":1}`, `{"stream":"yes"}`, `{"stream_options":[]}`, `{model:"a"}`,
	}
	for _, body := range invalid {
		var want apiRequest
		if json.Unmarshal([]byte(body), &want) == nil {
			t.Fatalf("%q: encoding/json accepts it", body)
		}
		var got apiRequest
		if err := parseRequest([]byte(body), &got); err == nil {
			t.Errorf("%q: accepted (%+v)", body, got)
		}
	}
}

// BenchmarkParseRequest1MiB: the fields of a 1 MiB chat request, as
// scenario 5 of make bench sends (encoding/json: about 7 ms).
func BenchmarkParseRequest1MiB(b *testing.B) {
	head, tail := `{"model":"bench","stream":true,"messages":[{"role":"user","content":"`, `"}]}`
	body := []byte(head + strings.Repeat("abcde ", (1<<20)/6) + tail)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var r apiRequest
		if err := parseRequest(body, &r); err != nil || r.Model != "bench" || !r.Stream {
			b.Fatalf("%+v %v", r, err)
		}
	}
}
