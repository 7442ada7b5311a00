package mockllm

import (
	"encoding/binary"
	"sync"
)

// audioPeriod is the length of the pseudo-random byte sequence audio is cut
// from; the sequence repeats after it. One table built once lets a chunk be
// a slice of it, so audio streams cost no generation per request.
const audioPeriod = MaxChunkBytes

const audioSeed = 0x6d6f636b6c6c6d31 // "mockllm1"

var (
	audioOnce  sync.Once
	audioTable []byte
)

// audio returns the sequence, building it on first use with SplitMix64.
func audio() []byte {
	audioOnce.Do(func() {
		t := make([]byte, audioPeriod)
		x := uint64(audioSeed)
		for i := 0; i < len(t); i += 8 {
			x += 0x9e3779b97f4a7c15
			z := x
			z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
			z = (z ^ (z >> 27)) * 0x94d049bb133111eb
			binary.LittleEndian.PutUint64(t[i:], z^(z>>31))
		}
		audioTable = t
	})
	return audioTable
}

// appendAudio appends n bytes of the sequence starting at offset off.
func appendAudio(dst []byte, off, n int) []byte {
	t := audio()
	for n > 0 {
		p := off % audioPeriod
		k := min(n, audioPeriod-p)
		dst = append(dst, t[p:p+k]...)
		off += k
		n -= k
	}
	return dst
}

// AudioBytes returns exactly the body /v1/audio/speech sends for
// X-Mock-Chunks: chunks and X-Mock-Chunk-Bytes: chunkBytes; every request
// with those values gets the same bytes.
func AudioBytes(chunks, chunkBytes int) []byte {
	if chunks <= 0 || chunkBytes <= 0 {
		return []byte{}
	}
	return appendAudio(make([]byte, 0, chunks*chunkBytes), 0, chunks*chunkBytes)
}

// speechEndpoint serves POST /v1/audio/speech. The body is always streamed.
func speechEndpoint(st *stream, req *apiRequest) {
	ct := "audio/mpeg"
	if req.ResponseFormat == "pcm" {
		ct = "audio/pcm"
	}
	size := st.ctl.chunkBytes
	t := audio()
	var wrap []byte // for the rare chunk that straddles the period
	n := st.ctl.chunkCount(DefaultAudioChunks)
	var length int64
	if st.ctl.length {
		length = int64(n) * int64(size)
	}
	st.run(&events{
		contentType: ct,
		length:      length,
		n:           n,
		chunk: func(i int) []byte {
			p := i * size % audioPeriod
			if p+size <= audioPeriod {
				return t[p : p+size]
			}
			wrap = appendAudio(wrap[:0], p, size)
			return wrap
		},
	})
}
