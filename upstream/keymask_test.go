package upstream

import "testing"

// TestMaskKey: the provider key is masked where a refusal repeats it, as
// it is and query-escaped; the end of a cut answer that begins the key is
// masked too, the end of a whole one not; a placeholder key (shorter than
// minMaskedKey) is left alone, the answer's words with it.
func TestMaskKey(t *testing.T) {
	r := &Route{Options: Options{ProviderKey: "sk-abc/def+123"}}
	for _, tt := range []struct {
		in, want string
		cut      bool
	}{
		{"no key here", "no key here", false},
		{"/v1?api_key=sk-abc%2Fdef%2B123&x=1", "/v1?api_key=[redacted]&x=1", false},
		{"bad key sk-abc/def+123!", "bad key [redacted]!", false},
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
	short := &Route{Options: Options{ProviderKey: "none"}}
	if got := short.maskKeyCut([]byte("none of the models")); string(got) != "none of the models" {
		t.Errorf("placeholder key masked: %q", got)
	}
}
