package record

import (
	"strconv"
	"testing"
)

// BenchmarkWindowWrite: the cost the usage window adds to each relayed read
// of an sse stream (a copy into the fixed array).
func BenchmarkWindowWrite(b *testing.B) {
	for _, size := range []int{200, 4 << 10, 16 << 10} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			p := make([]byte, size)
			var w Window
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				w.Write(p)
			}
		})
	}
}
