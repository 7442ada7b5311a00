package usage

import (
	"encoding/json"
	"testing"
)

func FuzzFind(f *testing.F) {
	for _, s := range []string{openAIStream, anthropicStream, `{"usage":{"prompt_tokens":1,"completion_tokens":2}}`, `"usage":`, `"usage":{"a":[{"b":"}"}]`, "\\\"usage\""} {
		f.Add([]byte(s))
	}
	f.Add([]byte(`data: {"usageMetadata": {"promptTokenCount": 9,"candidatesTokenCount": 1,"thoughtsTokenCount": 4}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		for a := range API(len(apiNames)) {
			in, out, ok := FindAPI(a, data)
			if ok && (in < 0 || out < 0) {
				t.Fatalf("%v: negative counts %d %d", a, in, out)
			}
			if !ok && (in != 0 || out != 0) {
				t.Fatalf("%v: counts without ok", a)
			}
		}
	})
}

func FuzzModel(f *testing.F) {
	for _, s := range []string{`{"model":"gpt"}`, `{"messages":[{"model":"x"}],"model":"y"}`, `{"model":"a\"b"}`, `{"model":`, `{`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := Model(body)
		var v struct {
			Model json.RawMessage `json:"model"`
		}
		if got != "" && json.Valid(body) {
			if err := json.Unmarshal(body, &v); err != nil || len(v.Model) < 2 {
				t.Fatalf("Model = %q but decode has %q (%v)", got, v.Model, err)
			}
		}
	})
}

func FuzzInjectIncludeUsage(f *testing.F) {
	for _, s := range []string{`{"stream":true}`, `{"model":"m","stream":true,"messages":[{"content":"{\"stream\":false}"}]}`, `{"stream":true,"stream_options":{}}`, `{}`, ` {"stream" :true } `, `{"stream":true`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, ok := InjectIncludeUsage(nil, body)
		if !ok {
			if len(out) != 0 {
				t.Fatalf("dst changed without ok")
			}
			return
		}
		if !json.Valid(body) {
			return // garbage after the object is kept as is
		}
		if !json.Valid(out) {
			t.Fatalf("invalid output %q from valid %q", out, body)
		}
		var v struct {
			Stream        bool `json:"stream"`
			StreamOptions struct {
				IncludeUsage bool `json:"include_usage"`
			} `json:"stream_options"`
		}
		if err := json.Unmarshal(out, &v); err != nil || !v.Stream || !v.StreamOptions.IncludeUsage {
			t.Fatalf("output %q: %+v %v", out, v, err)
		}
	})
}

func FuzzContentScanner(f *testing.F) {
	f.Add([]byte(`data: {"delta":{"content":"x"}}`), 3, uint8(0))
	f.Add([]byte(`{"text":""}`), 1, uint8(3))
	f.Add([]byte(`data: {"type":"response.output_text.delta","delta":"x"}`), 5, uint8(2))
	f.Add([]byte(`{"parts":[{"functionCall":{"name":"f"}}]}`), 2, uint8(4))
	f.Fuzz(func(t *testing.T, b []byte, step int, api uint8) {
		if step <= 0 {
			step = 1
		}
		a := API(api % uint8(len(apiNames)))
		whole := HasContent(a, b)
		var s ContentScanner
		s.Start(a, false, 200)
		split := false
		for i := 0; i < len(b); i += step {
			if s.Scan(b[i:min(i+step, len(b))]) {
				split = true
				break
			}
		}
		// Split scanning must never find what a whole scan does not.
		if split && !whole {
			t.Fatalf("%v: split scan found content a whole scan did not: %q", a, b)
		}
	})
}
