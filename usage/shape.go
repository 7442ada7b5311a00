package usage

// shape is what a response turned out to be, told by its first byte that
// is not white space: one JSON value, a non-streamed answer ('{', or '['
// for an array), or an SSE stream (anything else: "data:", "event:", a
// ":" comment, "id:").
type shape uint8

const (
	shapeUnknown shape = iota // nothing but white space so far
	shapeStream
	shapeBody
)

// shapeOf returns the shape of a response that starts with b.
func shapeOf(b []byte) shape {
	for _, c := range b {
		if isSpace(c) {
			continue
		}
		if c == '{' || c == '[' {
			return shapeBody
		}
		return shapeStream
	}
	return shapeUnknown
}
