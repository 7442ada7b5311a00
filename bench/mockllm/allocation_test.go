//go:build !race

package mockllm

import "testing"

func TestChunkAllocs(t *testing.T) {
	chunk := chunkMaker([]byte(`data: {"x":"`), []byte(`"}`+"\n\n"))
	i := 0
	if n := testing.AllocsPerRun(100, func() { _ = chunk(i); i += 12345 }); n != 0 {
		t.Errorf("SSE chunk: %v allocs, want 0", n)
	}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = appendAudio(buf[:0], i, 64); i += 999 }); n != 0 {
		t.Errorf("audio chunk: %v allocs, want 0", n)
	}
}
