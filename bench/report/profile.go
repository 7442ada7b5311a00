package main

import (
	"os"
	"sort"
	"strconv"
	"strings"
)

// areas sort a profile's functions into the places a proxy's CPU can go;
// the first match wins.
var areas = []struct {
	name     string
	prefixes []string
	contains []string
}{
	{name: "syscalls (read, write, epoll: the kernel's share shows here)", prefixes: []string{"syscall.", "internal/runtime/syscall", "runtime/internal/syscall", "golang.org/x/sys/unix", "internal/poll.", "runtime.netpoll", "runtime.epoll", "runtime.futex", "runtime.usleep", "runtime.nanotime"}},
	{name: "copying (memmove, memclr)", prefixes: []string{"runtime.memmove", "runtime.memclrNoHeapPointers"}},
	{name: "Go GC and allocation", prefixes: []string{"runtime.mallocgc", "runtime.gc", "runtime.scanobject", "runtime.greyobject", "runtime.markroot", "runtime.sweep", "runtime.(*mspan)", "runtime.(*mheap)", "runtime.(*mcache)", "runtime.(*gcWork)", "runtime.(*sweepLocked)", "runtime.findObject", "runtime.heapBits", "runtime.wbBuf", "runtime.bulkBarrier", "runtime.(*mcentral)", "runtime.nextFreeFast", "runtime.newobject", "runtime.makeslice", "runtime.growslice", "runtime.typePointers", "runtime.scanblock", "runtime.(*gcBits)", "runtime.(*pageAlloc)", "runtime.spanOf", "runtime.pcvalue", "runtime.scanframe"}},
	{name: "Go scheduler and other runtime", prefixes: []string{"runtime.", "internal/runtime", "sync."}},
	{name: "fasthttp (server, client, headers)", prefixes: []string{"github.com/valyala/fasthttp", "github.com/gofiber/"}},
	{name: "relay packages (handlers, upstream, record, chlog, quota, usage, telemetry)", prefixes: []string{"github.com/stream-relay/"}},
	{name: "ClickHouse encoding, compression", prefixes: []string{"github.com/ClickHouse/", "github.com/pierrec/", "github.com/klauspost/", "github.com/go-faster/"}},
	{name: "Redis client", prefixes: []string{"github.com/redis/"}},
	{name: "bufio, net/http (net/http is the mock's when profiled in process)", prefixes: []string{"net/http", "bufio.", "net/textproto"}},
	{name: "other (time, strconv, crypto, bytes, ...)", prefixes: []string{""}},
}

// groupProfile sums the flat percentages of `go tool pprof -top` output by
// area.
func groupProfile(path string) [][]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	sums := map[string]float64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || !strings.HasSuffix(f[1], "%") {
			continue
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(f[1], "%"), 64)
		if err != nil {
			continue
		}
		fn := strings.Join(f[5:], " ")
		for _, a := range areas {
			if hasAnyPrefix(fn, a.prefixes) {
				sums[a.name] += pct
				break
			}
		}
	}
	var rows [][]string
	for _, a := range areas {
		if v := sums[a.name]; v >= 0.5 {
			rows = append(rows, []string{a.name, strconv.FormatFloat(v, 'f', 1, 64)})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, _ := strconv.ParseFloat(rows[i][1], 64)
		b, _ := strconv.ParseFloat(rows[j][1], 64)
		return a > b
	})
	return rows
}

func hasAnyPrefix(s string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
