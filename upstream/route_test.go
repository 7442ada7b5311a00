package upstream

import "testing"

// TestHeaderSecret: the credential a route's headers send is Authorization's
// past its scheme, else the first of X-Api-Key, Api-Key, X-Goog-Api-Key;
// cookies are not taken (the first version took the longest secret-class
// value and cut a cookie string at its first space, masking "theme=dark"
// and leaking the session token).
func TestHeaderSecret(t *testing.T) {
	for _, tt := range []struct {
		name string
		h    map[string]string
		want string
	}{
		{"bearer", map[string]string{"Authorization": "Bearer SELFKEY-1234"}, "SELFKEY-1234"},
		{"lower-case name", map[string]string{"authorization": "bearer SELFKEY-1234"}, "SELFKEY-1234"},
		{"bare authorization", map[string]string{"Authorization": "SELFKEY-1234"}, "SELFKEY-1234"},
		{"authorization first", map[string]string{"X-Api-Key": "BBBBBBBBBBBBBBBBBBBBBBBB", "Authorization": "Bearer AAAAAAAAAAAAAAAAAAAA"}, "AAAAAAAAAAAAAAAAAAAA"},
		{"x-api-key", map[string]string{"x-api-key": " KEY-5678 ", "Anthropic-Version": "2023-06-01"}, "KEY-5678"},
		{"goog", map[string]string{"X-Goog-Api-Key": "AIzaKEY"}, "AIzaKEY"},
		{"cookie only", map[string]string{"Cookie": "session=0123456789abcdef; theme=dark"}, ""},
		{"none", map[string]string{"Anthropic-Version": "2023-06-01"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := headerSecret(tt.h); got != tt.want {
				t.Errorf("headerSecret = %q; want %q", got, tt.want)
			}
		})
	}
}
