package handlers

import (
	"math/rand/v2"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

const hexDigits = "0123456789abcdef"

// newRequestID writes a request id into id: 12 hex digits of Unix
// milliseconds (so ids sort by time) and 20 of randomness (80 bits).
func newRequestID(id *[record.IDLen]byte, now time.Time) {
	ms := uint64(now.UnixMilli())
	for i := 11; i >= 0; i-- {
		id[i] = hexDigits[ms&0xf]
		ms >>= 4
	}
	r1, r2 := rand.Uint64(), rand.Uint64()
	for i := 12; i < 28; i++ {
		id[i] = hexDigits[r1&0xf]
		r1 >>= 4
	}
	for i := 28; i < record.IDLen; i++ {
		id[i] = hexDigits[r2&0xf]
		r2 >>= 4
	}
}
