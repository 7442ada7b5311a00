package servicetest

import (
	"net"
	"strconv"
	"testing"
)

func TestFreePortOutsideEphemeralRange(t *testing.T) {
	lo, hi := ephemeralRange()
	for range 20 {
		p := FreePort(t)
		if p >= lo && p <= hi {
			t.Fatalf("port %d is in the ephemeral range %d-%d", p, lo, hi)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		_ = ln.Close()
	}
}

func TestPortPool(t *testing.T) {
	tests := []struct {
		name           string
		ephLo, ephHi   int
		wantLo, wantHi int
	}{
		{"linux default", 32768, 60999, 20000, 32767},
		{"low range", 1024, 60999, 61000, 65535},
		{"everything", 1024, 65535, 20000, 65535},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lo, hi := portPool(tt.ephLo, tt.ephHi)
			if lo != tt.wantLo || hi != tt.wantHi {
				t.Errorf("portPool(%d, %d) = %d-%d, want %d-%d", tt.ephLo, tt.ephHi, lo, hi, tt.wantLo, tt.wantHi)
			}
		})
	}
}
