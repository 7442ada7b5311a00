package main

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// syscallCount is one row of `strace -c` output.
type syscallCount struct {
	name  string
	calls int64
}

// readStrace parses `strace -c -o FILE`: the calls per syscall and the total.
func readStrace(path string) (rows []syscallCount, total int64, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || strings.HasPrefix(f[0], "%") || strings.HasPrefix(f[0], "-") {
			continue
		}
		calls, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			continue
		}
		name := f[len(f)-1]
		if name == "total" {
			total, ok = calls, true
			continue
		}
		rows = append(rows, syscallCount{name, calls})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].calls > rows[j].calls })
	return rows, total, ok
}

// syscalls shows the syscalls per stream of nginx and the relay, counted by
// strace during a short closed-loop run of scenario 1's load.
func (rp *report) syscalls() {
	var out [][]string
	for _, path := range []string{"nginx", "relay"} {
		rows, total, ok := readStrace(filepath.Join(rp.dir, "profiles", "syscalls."+path+".txt"))
		r := rp.med("s1strace", path)
		if !ok || r == nil || r.OK == 0 {
			continue
		}
		n := float64(r.OK)
		var top []string
		for i, c := range rows {
			if i == 6 {
				break
			}
			top = append(top, c.name+" "+num(float64(c.calls)/n))
		}
		out = append(out, []string{path, "**" + num(float64(total)/n) + "**", strings.Join(top, ", "), strconv.FormatInt(r.OK, 10)})
	}
	if len(out) == 0 {
		return
	}
	rp.p("Syscalls per stream, counted by `strace -f -c` attached to the proxy during a 3-second run of the same load (ptrace slows everything down, so only the counts mean anything; `profiles/syscalls.*.txt` has the whole tables):\n\n")
	rp.table([]string{"proxy", "syscalls per stream", "most frequent, per stream", "streams counted"}, out)
}
