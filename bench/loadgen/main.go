// Command loadgen drives streamed requests (SSE or raw audio) at a relay, a
// reference proxy or the mock upstream directly, and measures per request
// the time to first byte, the time to the first SSE event, every gap
// between events, the total time and the bytes.
//
// It runs N connections in a closed loop (each sends its next request when
// the last one ended) or, with -rate, in an open loop: a pacer fixes every
// request's intended send time and latency counts from that time, so a
// stalled server shows up in the quantiles instead of silently slowing the
// load (no coordinated omission).
//
//	loadgen -url http://127.0.0.1:8080/v1/chat/completions -c 64 -d 10s \
//	    -auth 'Bearer sk-relay-bench' -chunks 20 -json out.json -watch relay=1234
//
// It shares two cores with what it measures, so it is a hand-written
// HTTP/1.1 client on net.Conn: one prebuilt request, one read buffer per
// connection, one clock read per read, shared atomic histograms.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
