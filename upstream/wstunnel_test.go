package upstream

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// TestReadMessageLimit: a message of limit bytes is read whole; one byte
// more is errMessageTooBig after at most limit+1 bytes were read, however
// the reads split it.
func TestReadMessageLimit(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		limit   int64
		wantErr error
	}{
		{"empty", 0, 10, nil},
		{"at the limit", 10, 10, nil},
		{"one over", 11, 10, errMessageTooBig},
		{"large at the limit", 20000, 20000, nil},
		{"large one over", 20001, 20000, errMessageTooBig},
		{"far over", 1 << 20, 4096, errMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, half := range []bool{false, true} {
				r := strings.NewReader(strings.Repeat("x", tt.size))
				var rd io.Reader = r
				if half {
					rd = iotest.HalfReader(r)
				}
				buf, err := readMessage(rd, nil, tt.limit, nil)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("half %v: err %v, want %v", half, err, tt.wantErr)
				}
				if err == nil && len(buf) != tt.size {
					t.Fatalf("half %v: read %d bytes of %d", half, len(buf), tt.size)
				}
				if read := int64(tt.size - r.Len()); read > tt.limit+1 {
					t.Fatalf("half %v: read %d bytes past a limit of %d", half, read, tt.limit)
				}
			}
		})
	}
}
