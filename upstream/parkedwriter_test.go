package upstream

import "testing"

// probeReader hands out data step bytes per read and calls probe before
// each read, which is when a relayed stream waits for its upstream.
type probeReader struct {
	slowReader
	probe func()
}

func (r *probeReader) Read(p []byte) (int, error) {
	r.probe()
	return r.slowReader.Read(p)
}

// TestStreamParksClientWriter: while a stream waits for the upstream between
// its first and last chunk, the client writer under fasthttp's chunked
// writer holds no buffer; it has one again, of its size, for the
// terminator, and the client reads the whole body, well framed,
// over a real socket. A second stream gets its buffer back from the shelf.
func TestStreamParksClientWriter(t *testing.T) {
	parts := []string{"data: 1\n\n", "data: 2\n\n", "data: 3\n\n", "data: 4\n\n"}
	wire := chunked(parts...)
	for round := 0; round < 2; round++ {
		// One upstream read per chunk: reads 2 and 3 wait after a chunk was
		// written and before the last one.
		var sizes []int
		src := &probeReader{slowReader: slowReader{data: wire, step: len(chunked(parts[0])) - len("0\r\n\r\n")}}
		s, bw, finish := socketStream(t, src)
		src.probe = func() { sizes = append(sizes, bw.Size()) }
		n, err := s.copyTo(&chunkWriter{w: bw}, bw)
		if err != nil || n != int64(len("data: 1\n\n")*4) {
			t.Fatalf("copied %d, %v", n, err)
		}
		if len(sizes) < 4 || sizes[0] != 4<<10 || sizes[1] != 0 || sizes[2] != 0 {
			t.Fatalf("writer sizes at each upstream read %v, want 4096 before the first chunk, then 0 while parked", sizes)
		}
		if bw.Size() != 4<<10 {
			t.Fatalf("after the stream the writer has %d bytes of buffer, want 4096 for the terminator", bw.Size())
		}
		if s.parked != nil {
			t.Fatal("a writer is still parked after copyTo returned")
		}
		if decoded := finish(); string(decoded) != "data: 1\n\ndata: 2\n\ndata: 3\n\ndata: 4\n\n" {
			t.Fatalf("client decoded %q", decoded)
		}
		s.rb.release()
	}
}
