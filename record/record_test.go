package record

import (
	"bytes"
	"testing"
	"time"
)

func TestAddChunkCapturesUpToTheLimit(t *testing.T) {
	r := Acquire(10)
	defer Release(r)
	r.Capture = true
	r.AddChunk([]byte("abcd"), 1*time.Millisecond)
	r.AddChunk([]byte("efgh"), 2*time.Millisecond)
	r.AddChunk([]byte("ijkl"), 3*time.Millisecond) // over the limit: capture stops
	r.AddChunk([]byte("mn"), 4*time.Millisecond)
	if !r.Truncated || r.Chunks.Len() != 2 || string(r.Chunks.Chunk(0)) != "abcd" || string(r.Chunks.Chunk(1)) != "efgh" {
		t.Fatalf("truncated %v, %d chunks %q", r.Truncated, r.Chunks.Len(), r.Chunks.Data)
	}
	if r.ChunkCount != 4 || r.BytesOut != 14 {
		t.Errorf("counted %d chunks, %d bytes; want every chunk counted", r.ChunkCount, r.BytesOut)
	}
	if r.Chunks.AtMS[1] != 2 {
		t.Errorf("arrival %v", r.Chunks.AtMS)
	}
}

func TestAddChunkMetaKeepsTimesOnly(t *testing.T) {
	r := Acquire(1 << 20)
	defer Release(r)
	r.AddChunk([]byte("audio"), 5*time.Millisecond)
	r.AddChunk([]byte("bytes"), 7*time.Millisecond)
	if len(r.Chunks.Data) != 0 || r.Chunks.Len() != 2 || len(r.Chunks.Chunk(1)) != 0 || r.Chunks.AtMS[1] != 7 {
		t.Fatalf("meta capture: data %q times %v", r.Chunks.Data, r.Chunks.AtMS)
	}
}

func TestSetRequestBodyTruncates(t *testing.T) {
	r := Acquire(4)
	defer Release(r)
	r.SetRequestBody([]byte("123456"))
	if string(r.RequestBody) != "1234" || !r.Truncated {
		t.Fatalf("body %q truncated %v", r.RequestBody, r.Truncated)
	}
}

// TestRequestCutKeepsResponseWhole: the limit is per direction; a request
// body cut at it leaves the response's capture, bytes and times, whole
// (borrowed or copied alike).
func TestRequestCutKeepsResponseWhole(t *testing.T) {
	for _, borrow := range []bool{false, true} {
		r := Acquire(64)
		r.Capture = true
		body := bytes.Repeat([]byte("0123456789"), 7)
		if borrow {
			r.BorrowRequestBody(body, &owned{b: body})
		} else {
			r.SetRequestBody(body)
		}
		r.AddChunk([]byte("ab"), 1*time.Millisecond)
		r.AddChunk([]byte("cd"), 2*time.Millisecond)
		if !r.Truncated || !bytes.Equal(r.RequestBody, body[:64]) || string(r.Chunks.Data) != "abcd" || len(r.Chunks.AtMS) != 2 || !r.NeedsChunkBytes() {
			t.Errorf("borrow %v: truncated %v body %q chunks %q times %v", borrow, r.Truncated, r.RequestBody, r.Chunks.Data, r.Chunks.AtMS)
		}
		Release(r)
	}
}

func TestReleaseResetsAndKeepsSmallBuffers(t *testing.T) {
	r := Acquire(1 << 20)
	r.Capture = true
	r.Tenant = "t"
	r.AddChunk(bytes.Repeat([]byte("x"), 100), time.Millisecond)
	Release(r)
	if r.Tenant != "" || r.Chunks.Len() != 0 || len(r.Chunks.Data) != 0 || cap(r.Chunks.Data) < 100 {
		t.Fatalf("after release: tenant %q chunks %d cap %d", r.Tenant, r.Chunks.Len(), cap(r.Chunks.Data))
	}
	r2 := Acquire(8)
	defer Release(r2)
	if r2.TTFB != None || r2.TTFT != None || r2.TokensIn != -1 || r2.TokensOut != -1 || r2.CaptureLimit() != 8 {
		t.Errorf("acquired record not reset: %+v", r2)
	}
}
