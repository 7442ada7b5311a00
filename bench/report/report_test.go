package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadStrace(t *testing.T) {
	const out = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.600000           2    300000           write
 30.00    0.300000           1    200000     50000 read
 10.00    0.100000           1    100000           epoll_pwait
------ ----------- ----------- --------- --------- ----------------
100.00    1.000000           1    600000     50000 total
`
	p := filepath.Join(t.TempDir(), "s.txt")
	if err := os.WriteFile(p, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	rows, total, ok := readStrace(p)
	if !ok || total != 600000 || len(rows) != 3 || rows[0].name != "write" || rows[1].calls != 200000 {
		t.Errorf("readStrace = %+v, %d, %v", rows, total, ok)
	}
}

func TestGroupProfile(t *testing.T) {
	const top = `      flat  flat%   sum%        cum   cum%
     1.35s 62.21% 62.21%      1.35s 62.21%  internal/runtime/syscall/linux.Syscall6
     0.15s  6.91% 69.12%      0.15s  6.91%  runtime.memmove
     0.06s  2.76% 71.88%      0.06s  2.76%  runtime.mallocgc
     0.03s  1.38% 73.26%      0.03s  1.38%  github.com/stream-relay/stream-relay/upstream.appendJSONString
`
	p := filepath.Join(t.TempDir(), "top.txt")
	if err := os.WriteFile(p, []byte(top), 0o644); err != nil {
		t.Fatal(err)
	}
	g := groupProfile(p)
	if len(g) != 4 || g[0][1] != "62.2" || g[1][1] != "6.9" {
		t.Errorf("groupProfile = %v", g)
	}
}

func TestSustained(t *testing.T) {
	tests := []struct {
		name string
		r    Result
		want bool
	}{
		{"held", Result{Rate: 1000, RPS: 990, SendLag: Summary{P99Ms: 1}}, true},
		{"slow", Result{Rate: 1000, RPS: 900, SendLag: Summary{P99Ms: 1}}, false},
		{"late sends", Result{Rate: 1000, RPS: 990, SendLag: Summary{P99Ms: 12}}, false},
		{"errors", Result{Rate: 1000, RPS: 990, Errors: 1}, false},
		{"closed loop", Result{RPS: 990}, false},
	}
	for _, tt := range tests {
		if got := tt.r.sustained(); got != tt.want {
			t.Errorf("%s: sustained() = %v, want %v", tt.name, got, tt.want)
		}
	}
}
