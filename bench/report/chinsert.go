package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// chInsertFile is where bench/run.sh keeps bench/chinsert's output.
const chInsertFile = "chinsert.json"

// ChInsert mirrors bench/chinsert's JSON: the same blocks inserted into the
// same ClickHouse by the relay's writer (chlog), by clickhouse-client
// (FORMAT Native, native protocol) and by a plain HTTP POST, in rounds.
type ChInsert struct {
	Rows              int       `json:"rows"`
	RowBytes          float64   `json:"row_bytes"`
	BlockRows         int       `json:"block_rows"`
	Rounds            int       `json:"rounds"`
	WriterRowsPerS    []float64 `json:"writer_rows_per_s"`
	ClientRowsPerS    []float64 `json:"client_rows_per_s"`
	HTTPRowsPerS      []float64 `json:"http_rows_per_s"`
	WriterMedian      float64   `json:"writer_median"`
	ClientMedian      float64   `json:"client_median"`
	HTTPMedian        float64   `json:"http_median"`
	RatioWriterCl     float64   `json:"ratio_writer_client"`
	ServerCPUUsPerRow float64   `json:"server_cpu_us_per_row"`
	Notes             string    `json:"notes"`
}

// readChInsert reads bench/chinsert's output; a missing file is no error
// (the scenario was not run, and meta.txt says why).
func readChInsert(path string) (*ChInsert, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	c := &ChInsert{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func rounds(vs []float64) string {
	if len(vs) == 0 {
		return "–"
	}
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = num(v)
	}
	return strings.Join(s, ", ")
}

func orDashNum(v float64) string {
	if v == 0 {
		return "–"
	}
	return num(v)
}

func (rp *report) scenario6() {
	rp.p("## 6. Rows into ClickHouse: the relay's writer vs clickhouse-client\n\n")
	c := rp.chinsert
	if c == nil {
		st := rp.meta["s6_status"]
		switch {
		case rp.meta["quick"] == "1":
			rp.p("Not run (quick mode).\n\n")
		case strings.HasPrefix(st, "not run: "):
			rp.p("Not run: %s.\n\n", strings.TrimPrefix(st, "not run: "))
		case st == "" || st == "ok":
			rp.p("Not run: no result from bench/chinsert.\n\n")
		default:
			rp.p("No result: %s.\n\n", st)
		}
		return
	}
	rp.p("`bench/chinsert` inserts the same %s rows per method and round (%s bytes each in Native form, blocks of %s rows) into the same ClickHouse server, %d rounds with the methods interleaved: the relay's writer (`chlog.Writer`: Native blocks over HTTP), `clickhouse-client --query \"INSERT ... FORMAT Native\"` (native TCP protocol) and a plain HTTP POST of the same blocks (see `bench/chinsert` for how each is sent and timed). ",
		strconv.Itoa(c.Rows), num(c.RowBytes), strconv.Itoa(c.BlockRows), c.Rounds)
	rp.p("It runs after the load scenarios, with the proxies stopped; the server shares this machine's cores, so its own CPU per row bounds all three. Target 6 of the issue: writer ≥ 0.9 × clickhouse-client.\n\n")
	rp.table([]string{"inserter", "rows/s (median)", "rounds", "vs clickhouse-client"}, [][]string{
		{"relay writer (chlog)", "**" + orDashNum(c.WriterMedian) + "**", rounds(c.WriterRowsPerS), ratioOrGiven(c.WriterMedian, c.ClientMedian, c.RatioWriterCl)},
		{"clickhouse-client, FORMAT Native", "**" + orDashNum(c.ClientMedian) + "**", rounds(c.ClientRowsPerS), ratio(c.ClientMedian, c.ClientMedian)},
		{"plain HTTP POST, FORMAT Native", "**" + orDashNum(c.HTTPMedian) + "**", rounds(c.HTTPRowsPerS), ratio(c.HTTPMedian, c.ClientMedian)},
	})
	if c.ServerCPUUsPerRow > 0 {
		rp.p("ClickHouse server CPU per row during the writer's runs: %s µs (user+system). ", num(c.ServerCPUUsPerRow))
	}
	if n := strings.TrimSpace(c.Notes); n != "" {
		rp.p("Notes from bench/chinsert: %s", n)
	}
	rp.p("\n\n")
	if top, err := os.ReadFile(filepath.Join(rp.dir, "profiles", "chinsert.writer.cpu.top.txt")); err == nil {
		rp.p("CPU profile of bench/chinsert during the writer's runs (`profiles/chinsert.writer.cpu.pprof`; the program's side only, not the server's):\n\n```\n%s```\n\n", headLines(string(top), 22))
	}
}

// ratioOrGiven is a/b, or the given ratio when the program computed one.
func ratioOrGiven(a, b, given float64) string {
	if given > 0 {
		return strconv.FormatFloat(given, 'f', 2, 64)
	}
	return ratio(a, b)
}
