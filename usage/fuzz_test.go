package usage

import (
	"encoding/json"
	"testing"
)

func FuzzFind(f *testing.F) {
	for _, s := range []string{openAIStream, anthropicStream, `{"usage":{"prompt_tokens":1,"completion_tokens":2}}`, `"usage":`, `"usage":{"a":[{"b":"}"}]`, "\\\"usage\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in, out, ok := Find(data)
		if ok && (in < 0 || out < 0) {
			t.Fatalf("negative counts %d %d", in, out)
		}
		if !ok && (in != 0 || out != 0) {
			t.Fatalf("counts without ok")
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
