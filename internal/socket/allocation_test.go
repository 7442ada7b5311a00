//go:build !race

package socket

import "testing"

// A read or a write through a connection allocates nothing.
func TestReadWriteAllocNothing(t *testing.T) {
	c, peer := pair(t)
	msg := pattern(1 << 10)
	in := make([]byte, 4<<10)
	echo := make([]byte, 4<<10)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		n, err := peer.Read(echo)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write(echo[:n]); err != nil {
			t.Fatal(err)
		}
		for got := 0; got < n; {
			m, err := c.Read(in[got:n])
			if err != nil {
				t.Fatal(err)
			}
			got += m
		}
	})
	if allocs != 0 {
		t.Fatalf("a write and a read allocate %.1f times; want 0", allocs)
	}
}
