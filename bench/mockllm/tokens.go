package mockllm

import (
	"encoding/json"
	"strconv"
)

// appendToken appends the text of content chunk i: "tok<i> ".
func appendToken(dst []byte, i int) []byte {
	dst = append(dst, "tok"...)
	dst = strconv.AppendInt(dst, int64(i), 10)
	return append(dst, ' ')
}

// tokensText is the whole completion of n chunks, as a non-streaming
// response carries it.
func tokensText(n int) string {
	b := make([]byte, 0, n*8)
	for i := range n {
		b = appendToken(b, i)
	}
	return string(b)
}

// chunkMaker returns a chunk function that builds prefix + token(i) + suffix
// in one buffer it reuses, so a chunk costs no allocation.
func chunkMaker(prefix, suffix []byte) func(i int) []byte {
	buf := make([]byte, 0, len(prefix)+len(suffix)+16)
	return func(i int) []byte {
		buf = append(buf[:0], prefix...)
		buf = appendToken(buf, i)
		return append(buf, suffix...)
	}
}

// jsonString returns s as a JSON string literal.
func jsonString(s string) []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic("BUG: mockllm: marshal string: " + err.Error())
	}
	return b
}

// concat joins parts into one new slice.
func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}
