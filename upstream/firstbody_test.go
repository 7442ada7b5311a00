package upstream

import (
	"testing"
)

// TestFirstData: a body's first data byte is any byte of a fixed-length or
// close-delimited body, and for a chunked one the first byte after a
// complete size line (or a last chunk right away: an empty body); a size
// line alone, or half of one, is no data yet, and a malformed one is an
// error.
func TestFirstData(t *testing.T) {
	for _, tt := range []struct {
		name string
		mode bodyMode
		in   string
		want bool
		err  bool
	}{
		{"fixed, nothing", bodyFixed, "", false, false},
		{"fixed, a byte", bodyFixed, "{", true, false},
		{"close, a byte", bodyClose, "d", true, false},
		{"chunked, nothing", bodyChunked, "", false, false},
		{"chunked, half a size line", bodyChunked, "1a", false, false},
		{"chunked, a size line", bodyChunked, "1a\r\n", false, false},
		{"chunked, a size line with an extension", bodyChunked, "1a;x=y\r\n", false, false},
		{"chunked, data", bodyChunked, "1a\r\nd", true, false},
		{"chunked, empty body", bodyChunked, "0\r\n", true, false},
		{"chunked, malformed", bodyChunked, "zz\r\n", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var rb readBuf
			rb.size = 4 << 10
			rb.preload([]byte(tt.in))
			var b bodyReader
			b.reset(&rb, tt.mode, 100)
			got, err := b.firstData()
			if got != tt.want || (err != nil) != tt.err {
				t.Errorf("firstData of %q: %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
			}
		})
	}
}
