package servicetest

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreePort returns a loopback TCP port that was free a moment ago. It is
// taken outside the kernel's ephemeral range, the one a listener on port 0
// gets its port from: packages test in parallel, and a test that keeps a
// port dead (a ClickHouse nobody runs, a refused target) must not find a
// relay of another package's test listening there a moment later.
func FreePort(tb testing.TB) int {
	tb.Helper()
	lo, hi := portPool(ephemeralRange())
	for range 200 {
		if port := lo + rand.IntN(hi-lo+1); portFree(port) {
			return port
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeAddr returns a loopback address ("127.0.0.1:port") that was free a
// moment ago: nothing listens there.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return "127.0.0.1:" + strconv.Itoa(FreePort(tb))
}

// ephemeralRange is the kernel's range of ports for port 0 listeners and
// outgoing connections, Linux's default when it cannot be read.
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l > h {
		return lo, hi
	}
	return l, h
}

// portPool is the range FreePort draws from given the ephemeral range:
// below it from port 20000 (clear of the fixed ports of the project's
// services) when that leaves room, else above it.
func portPool(ephLo, ephHi int) (lo, hi int) {
	const floor, room = 20000, 2000
	if ephLo-1-floor >= room {
		return floor, ephLo - 1
	}
	if 65535-ephHi >= room {
		return ephHi + 1, 65535
	}
	return floor, 65535 // no room outside: any port
}
