// Package procstat reads the CPU time, resident memory and context
// switches of watched processes from /proc, for the benchmark programs
// (bench/loadgen, bench/vegetarun).
package procstat

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ClkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat; 100
// on every Linux architecture Go supports.
const ClkTck = 100

// Group is a named set of processes read together: nginx's workers sum
// into one.
type Group struct {
	Name string
	PIDs []int
}

// ParseWatch parses "name=pid[+pid...],name=...".
func ParseWatch(s string) ([]Group, error) {
	var gs []Group
	if s == "" {
		return gs, nil
	}
	for _, item := range strings.Split(s, ",") {
		name, list, ok := strings.Cut(item, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("watch=%q: want name=pid[+pid...]", item)
		}
		g := Group{Name: name}
		for _, f := range strings.Split(list, "+") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				return nil, fmt.Errorf("watch=%q: bad pid %q", item, f)
			}
			g.PIDs = append(g.PIDs, pid)
		}
		gs = append(gs, g)
	}
	return gs, nil
}

// Usage is one reading of a group.
type Usage struct {
	RSSKB int64
	Ticks int64 // utime + stime
	User  int64 // utime alone: the part of Ticks spent in user space
	CSW   int64 // context switches of all threads, voluntary and not (when asked for)
}

// Read sums the group's processes; switches also counts context switches
// (a directory walk per process: read it at marks, not every sample).
func (g Group) Read(switches bool) (Usage, error) {
	var u Usage
	for _, pid := range g.PIDs {
		p := strconv.Itoa(pid)
		r, err := readProc(p)
		if err != nil {
			return u, err
		}
		u.RSSKB += r.RSSKB
		u.Ticks += r.Ticks
		u.User += r.User
		if switches {
			u.CSW += readSwitches(p)
		}
	}
	return u, nil
}

// readSwitches sums the context switches of every thread of pid: a Go
// process hands work between threads, and each hand-off costs a switch.
func readSwitches(pid string) int64 {
	tasks, err := os.ReadDir("/proc/" + pid + "/task")
	if err != nil {
		return 0
	}
	var n int64
	for _, t := range tasks {
		st, err := os.ReadFile("/proc/" + pid + "/task/" + t.Name() + "/status")
		if err != nil {
			continue // the thread exited
		}
		for _, key := range [][]byte{[]byte("voluntary_ctxt_switches:"), []byte("nonvoluntary_ctxt_switches:")} {
			i := bytes.Index(st, key)
			if i < 0 || (i > 0 && st[i-1] != '\n') {
				// "voluntary" also matches inside "nonvoluntary"; take the line start
				i = bytes.Index(st, append([]byte("\n"), key...))
				if i < 0 {
					continue
				}
				i++
			}
			if f := bytes.Fields(st[i+len(key):]); len(f) > 0 {
				v, _ := strconv.ParseInt(string(f[0]), 10, 64)
				n += v
			}
		}
	}
	return n
}

func readProc(pid string) (Usage, error) {
	var u Usage
	st, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return u, err
	}
	if i := bytes.Index(st, []byte("VmRSS:")); i >= 0 {
		f := bytes.Fields(st[i+6:])
		if len(f) > 0 {
			u.RSSKB, _ = strconv.ParseInt(string(f[0]), 10, 64)
		}
	}
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return u, err
	}
	// Fields after the command name, which may hold spaces, start at ") ";
	// utime and stime are fields 14 and 15, i.e. 12 and 13 after it.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("/proc/%s/stat: no command", pid)
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 14 {
		return u, fmt.Errorf("/proc/%s/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stt, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return u, fmt.Errorf("/proc/%s/stat: bad utime/stime", pid)
	}
	u.Ticks, u.User = ut+stt, ut
	return u, nil
}
