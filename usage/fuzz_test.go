package usage

import (
	"bytes"
	"encoding/json"
	"strings"
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
	for _, s := range []string{`{"model":"gpt"}`, `{"messages":[{"model":"x"}],"model":"y"}`, `{"model":"a\"b"}`, `{"model":`, `{`, `{"model":"a","model":"b"}`} {
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
	for _, s := range []string{`{"stream":true}`, `{"model":"m","stream":true,"messages":[{"content":"{\"stream\":false}"}]}`, `{"stream":true,"stream_options":{}}`, `{}`, ` {"stream" :true } `, `{"stream":true`, `{"stream":true}trailing`} {
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
			// Only a nested value can be malformed (not validated): the
			// top level was, with nothing but white space after it.
			if b := bytes.TrimRight(body, " \t\r\n"); b[len(b)-1] != '}' {
				t.Fatalf("rewrote %q, which does not end its object", body)
			}
			return
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

// FuzzStreamError: the live scan finds an error whatever the reads' cuts
// (the same answer as one read, and as one byte a read, where every SSE
// event is cut and so walked whole: the events indexErrorKey lets pass
// hold no key), and finds every error key a JSON decoder sees: a
// top-level "error" whose value is an object or a string that is not
// blank, in an SSE event's data (its data lines joined with line feeds) or
// in a JSON body that is one object or one array of them.
func FuzzStreamError(f *testing.F) {
	for _, tt := range streamErrorCases {
		f.Add([]byte(tt.stream), 7)
	}
	for _, tt := range streamNoErrorCases {
		f.Add([]byte(tt.stream), 3)
	}
	f.Fuzz(func(t *testing.T, b []byte, step int) {
		if len(b) > 1<<16 {
			return
		}
		step = max(1, step%97)
		whole := HasStreamError(false, 200, b, []uint32{uint32(len(b))})
		var ends []uint32
		for i := step; i < len(b); i += step {
			ends = append(ends, uint32(i))
		}
		ends = append(ends, uint32(len(b)))
		if split := HasStreamError(false, 200, b, ends); split != whole {
			t.Fatalf("cut every %d bytes: %v, in one read: %v: %q", step, split, whole, b)
		}
		if len(b) <= 1<<12 {
			ends = ends[:0]
			for i := 1; i <= len(b); i++ {
				ends = append(ends, uint32(i))
			}
			if bytewise := HasStreamError(false, 200, b, ends); bytewise != whole {
				t.Fatalf("one byte a read: %v, in one read: %v: %q", bytewise, whole, b)
			}
		}
		if !whole && decodedErrorKey(b) {
			t.Fatalf("error key not found: %q", b)
		}
	})
}

// decodedErrorKey is FuzzStreamError's oracle, with encoding/json. It
// leaves out what the scanner does not claim to read: keys spelled with
// \u escapes, lines that end with a lone CR, a body of several values.
func decodedErrorKey(b []byte) bool {
	if bytes.Contains(b, []byte(`\u`)) || bytes.Contains(bytes.ReplaceAll(b, []byte("\r\n"), nil), []byte("\r")) {
		return false
	}
	hasKey := func(v []byte) bool {
		var m map[string]json.RawMessage
		if json.Unmarshal(v, &m) != nil {
			return false
		}
		e := m["error"]
		if len(e) == 0 {
			return false
		}
		switch e[0] {
		case '{':
			var o map[string]json.RawMessage
			return json.Unmarshal(e, &o) == nil && len(o) > 0 // {} is no error
		case '"':
			return strings.Trim(string(e[1:len(e)-1]), " \t") != ""
		}
		return false
	}
	if shapeOf(b) == shapeBody {
		if !json.Valid(b) {
			return false
		}
		var elems []json.RawMessage
		if json.Unmarshal(b, &elems) != nil {
			return hasKey(b)
		}
		for _, e := range elems {
			if hasKey(e) {
				return true
			}
		}
		return false
	}
	var data []byte
	fed := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			if fed && hasKey(data) {
				return true
			}
			data, fed = data[:0], false
			continue
		}
		v, ok := strings.CutPrefix(line, "data:")
		if !ok {
			continue
		}
		if fed {
			data = append(data, '\n')
		}
		data, fed = append(data, strings.TrimPrefix(v, " ")...), true
	}
	return fed && hasKey(data)
}

// FuzzSkipString: the quote-to-quote skip ends every string where a walk
// byte by byte does.
func FuzzSkipString(f *testing.F) {
	for _, s := range []string{`"a"`, `"a\"b"`, `"a\\"`, `"\\\"x"`, `"\\\\"`, `"unterminated\"`, `"\`, `x"a"`, `""`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := skipString(b, 0), skipStringBytewise(b, 0); got != want {
			t.Fatalf("skipString(%q) = %d; byte by byte %d", b, got, want)
		}
	})
}

// skipStringBytewise is skipString written the plain way.
func skipStringBytewise(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}
