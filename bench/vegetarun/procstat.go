package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
const clkTck = 100

// proc is a named group of processes whose CPU is counted together (nginx's
// workers sum into one).
type proc struct {
	name string
	pids []int
}

func parseWatch(s string) ([]proc, error) {
	var ps []proc
	if s == "" {
		return ps, nil
	}
	for _, item := range strings.Split(s, ",") {
		name, list, ok := strings.Cut(item, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("-watch %q: want name=pid[+pid...]", item)
		}
		p := proc{name: name}
		for _, f := range strings.Split(list, "+") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				return nil, fmt.Errorf("-watch %q: bad pid %q", item, f)
			}
			p.pids = append(p.pids, pid)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// ticks is the group's user+system CPU time so far, in clock ticks.
func (p proc) ticks() (int64, error) {
	var n int64
	for _, pid := range p.pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, err
		}
		// The command name may hold spaces: fields count from after its ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			return 0, fmt.Errorf("pid %d: bad stat", pid)
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			return 0, fmt.Errorf("pid %d: short stat", pid)
		}
		// After ')': state is field 3 of stat, so utime (14) and stime (15)
		// are at 11 and 12 here.
		ut, err1 := strconv.ParseInt(f[11], 10, 64)
		st, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("pid %d: bad utime/stime", pid)
		}
		n += ut + st
	}
	return n, nil
}

// readTicks reads every group; a group that cannot be read is left out.
func readTicks(ps []proc) map[string]int64 {
	m := make(map[string]int64, len(ps))
	for _, p := range ps {
		if t, err := p.ticks(); err == nil {
			m[p.name] = t
		}
	}
	return m
}
