// Package mono reads the process's monotonic clock as an integer, for
// times kept in atomics and compared later: ejection ends, log rate limits,
// sweeps. time.Now().UnixNano() drops the monotonic reading and follows
// every step of the wall clock (an NTP correction, an operator's date -s):
// a step back of an hour kept a target ejected for an hour past its
// cool-down. These do not.
package mono

import "time"

// epoch is the origin of Now, taken when the process starts.
var epoch = time.Now()

// Now returns the nanoseconds since the process started, on the monotonic
// clock: never less than an earlier call's, whatever the wall clock does.
// It is at least 1, so that 0 can mean "unset".
func Now() int64 {
	return max(int64(time.Since(epoch)), 1)
}
