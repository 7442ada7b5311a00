package upstream

import (
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// TestMaskKey: the provider key is masked where a refusal repeats it, as
// it is and query-escaped; the end of a cut answer that begins the key is
// masked too, the end of a whole one not; a placeholder key (shorter than
// minMaskedKey) is left alone, the answer's words with it.
func TestMaskKey(t *testing.T) {
	r := &Route{Options: Options{ProviderKey: "sk-abc/def+123"}, secret: "sk-abc/def+123", keyJSON: `sk-abc\/def+123`}
	for _, tt := range []struct {
		in, want string
		cut      bool
	}{
		{"no key here", "no key here", false},
		{"/v1?api_key=sk-abc%2Fdef%2B123&x=1", "/v1?api_key=[redacted]&x=1", false},
		{"bad key sk-abc/def+123!", "bad key [redacted]!", false},
		{`{"key":"sk-abc\/def+123"}`, `{"key":"[redacted]"}`, false},
		{"ends with sk-abc", "ends with sk-abc", false},
		{"ends with sk-abc", "ends with [redacted]", true},
	} {
		got := r.maskKey([]byte(tt.in))
		if tt.cut {
			got = r.maskKeyCut([]byte(tt.in))
		}
		if string(got) != tt.want {
			t.Errorf("%q (cut %v): %q, want %q", tt.in, tt.cut, got, tt.want)
		}
	}
	short := &Route{Options: Options{ProviderKey: "none"}, secret: "none"}
	if got := short.maskKeyCut([]byte("none of the models")); string(got) != "none of the models" {
		t.Errorf("placeholder key masked: %q", got)
	}
}

// TestBodyMask: an answer that is no success has the provider key masked in
// its body in place, at the same length, as it is and query-escaped, also
// where reads split it; a read that ends in the key's beginning loses it
// even when the next read does not go on with the key; success bodies and
// a placeholder key are left alone.
func TestBodyMask(t *testing.T) {
	const key = "sk-abc/def+123456"
	r, err := NewRoute(Options{Name: "m", Path: "/v1/*", Upstream: "http://127.0.0.1:1", Kind: record.KindSSE, ProviderKey: key}, NewClients())
	if err != nil {
		t.Fatal(err)
	}
	if r.keyQuery != "sk-abc%2Fdef%2B123456" || r.keyJSON != `sk-abc\/def+123456` {
		t.Fatalf("forms %q %q", r.keyQuery, r.keyJSON)
	}
	for _, tt := range []struct {
		name   string
		status int
		reads  []string
		want   string
	}{
		{"no key", 401, []string{`{"error":"bad key"}`}, `{"error":"bad key"}`},
		{"whole", 401, []string{`{"error":"bad key sk-abc/def+123456"}`}, `{"error":"bad key [redacted]*******"}`},
		{"twice and escaped", 400, []string{"sk-abc/def+123456 and ?k=sk-abc%2Fdef%2B123456."},
			"[redacted]******* and ?k=[redacted]***********."},
		{"split", 401, []string{`key "sk-abc/d`, `ef+123456" refused`}, `key "*****************" refused`},
		{"split three ways", 502, []string{"x sk-ab", "c/def+", "123456 y"}, "x ***************** y"},
		{"end is no key", 401, []string{"sk-abc", " is a prefix"}, "****** is a prefix"},
		{"success", 200, []string{"echo sk-abc/def+123456"}, "echo sk-abc/def+123456"},
		// A cut 1 to 3 bytes into the key: those stay, the rest is masked.
		{"split after 3", 401, []string{"key sk-", "abc/def+123456 refused"}, "key sk-************** refused"},
		{"split after 1", 401, []string{"key s", "k-abc/def+123456 refused"}, "key s**************** refused"},
		// The forms share "sk-abc": the raw form's '*'s hid the query
		// form's beginning, and its rest went out.
		{"query form split in the shared part", 401, []string{"?k=sk-abc", "%2Fdef%2B123456 x"}, "?k=********************* x"},
		// JSON may write '/' as "\/" (PHP's json_encode does).
		{"JSON-escaped", 401, []string{`{"error":"bad key sk-abc\/def+123456"}`}, `{"error":"bad key [redacted]********"}`},
		{"JSON-escaped split", 401, []string{`{"error":"key sk-abc\/d`, `ef+123456"}`}, `{"error":"key ******************"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var m bodyMask
			m.start(r, tt.status)
			var got []byte
			for _, read := range tt.reads {
				b := []byte(read)
				if m.on {
					m.apply(b)
				}
				if len(b) != len(read) {
					t.Fatalf("read %q masked to %q: length changed", read, b)
				}
				got = append(got, b...)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	var m bodyMask
	m.start(&Route{Options: Options{ProviderKey: "EMPTY"}, secret: "EMPTY"}, 401)
	if m.on {
		t.Error("a placeholder key is masked")
	}
}
