package main

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// micro summarizes micro.txt (go test -bench -benchmem, several counts):
// the median of each metric per benchmark.
func (rp *report) micro() {
	rp.p("## Micro benchmarks\n\n")
	b, err := os.ReadFile(filepath.Join(rp.dir, "micro.txt"))
	if err != nil {
		rp.p("Not run (quick mode).\n\n")
		return
	}
	type bench struct {
		pkg, name         string
		ns, bytes, allocs []float64
		mbs               []float64
	}
	var order []string
	bs := map[string]*bench{}
	pkg := ""
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/stream-relay/stream-relay/")
			continue
		}
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		key := pkg + " " + f[0]
		x := bs[key]
		if x == nil {
			x = &bench{pkg: pkg, name: f[0]}
			bs[key] = x
			order = append(order, key)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				x.ns = append(x.ns, v)
			case "B/op":
				x.bytes = append(x.bytes, v)
			case "allocs/op":
				x.allocs = append(x.allocs, v)
			case "MB/s":
				x.mbs = append(x.mbs, v)
			}
		}
	}
	rp.p("`go test -run '^$' -bench . -benchmem -count %s` over upstream, chlog, quota, telemetry, usage and app, saved whole in `micro.txt` (benchstat input: `benchstat micro.prev.txt micro.txt` compares with the previous run, which the script keeps as `micro.prev.txt`). Medians of the counts:\n\n", orDash(rp.meta["micro_count"]))
	var rows [][]string
	for _, k := range order {
		x := bs[k]
		rows = append(rows, []string{x.pkg, strings.TrimPrefix(x.name, "Benchmark"), med(x.ns, 1), med(x.mbs, 1), med(x.bytes, 0), med(x.allocs, 0), strconv.Itoa(len(x.ns))})
	}
	rp.table([]string{"package", "benchmark", "ns/op", "MB/s", "B/op", "allocs/op", "runs"}, rows)
	if strings.Contains(string(b), "FAIL") || strings.Contains(string(b), "SKIP") {
		rp.p("Some benchmarks failed or skipped; see `micro.txt`.\n\n")
	}
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}

func med(v []float64, prec int) string {
	if len(v) == 0 {
		return "–"
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return strconv.FormatFloat(s[len(s)/2], 'f', prec, 64)
}
