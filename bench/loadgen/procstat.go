package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clkTck is USER_HZ, the unit of utime and stime in /proc/<pid>/stat; 100
// on every Linux architecture Go supports.
const clkTck = 100

// proc is a named group of processes sampled together: nginx's workers sum
// into one.
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
			return nil, fmt.Errorf("watch=%q: want name=pid[+pid...]", item)
		}
		p := proc{name: name}
		for _, f := range strings.Split(list, "+") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				return nil, fmt.Errorf("watch=%q: bad pid %q", item, f)
			}
			p.pids = append(p.pids, pid)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// usage is one reading of a process group.
type usage struct {
	rssKB int64
	ticks int64 // utime + stime
	csw   int64 // context switches of all threads, voluntary and not; read at the marks only
}

func (p *proc) read(switches bool) (usage, error) {
	var u usage
	for _, pid := range p.pids {
		r, err := readProc(strconv.Itoa(pid))
		if err != nil {
			return u, err
		}
		u.rssKB += r.rssKB
		u.ticks += r.ticks
		if switches {
			u.csw += readSwitches(strconv.Itoa(pid))
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

func readProc(pid string) (usage, error) {
	var u usage
	st, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return u, err
	}
	if i := bytes.Index(st, []byte("VmRSS:")); i >= 0 {
		f := bytes.Fields(st[i+6:])
		if len(f) > 0 {
			u.rssKB, _ = strconv.ParseInt(string(f[0]), 10, 64)
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
	ut, _ := strconv.ParseInt(string(f[11]), 10, 64)
	stt, _ := strconv.ParseInt(string(f[12]), 10, 64)
	u.ticks = ut + stt
	return u, nil
}
