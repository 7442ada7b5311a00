package main

import (
	"fmt"
	"slices"
	"strings"
)

// result is the JSON bench/report reads (raw/chinsert.json); its field
// names are a contract with the report.
type result struct {
	Rows              int       `json:"rows"`
	RowBytes          float64   `json:"row_bytes"` // Native bytes per row, uncompressed
	BlockRows         int       `json:"block_rows"`
	Rounds            int       `json:"rounds"`
	WriterRowsPerS    []float64 `json:"writer_rows_per_s"`
	ClientRowsPerS    []float64 `json:"client_rows_per_s"`
	HTTPRowsPerS      []float64 `json:"http_rows_per_s"`
	WriterMedian      float64   `json:"writer_median"`
	ClientMedian      float64   `json:"client_median"`
	HTTPMedian        float64   `json:"http_median"`
	RatioWriterClient float64   `json:"ratio_writer_client"`
	// ServerCPUUsPerRow is clickhouse-server's CPU time per row during the
	// writer runs (0 when its process was not found).
	ServerCPUUsPerRow float64 `json:"server_cpu_us_per_row"`
	Notes             string  `json:"notes"`
}

// median of v (0 for none).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *result) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chinsert: %d rows x %d rounds, %.0f B/row, %d rows/block\n", r.Rows, r.Rounds, r.RowBytes, r.BlockRows)
	fmt.Fprintf(&b, "  writer            %8.0f rows/s  %v\n", r.WriterMedian, round0(r.WriterRowsPerS))
	fmt.Fprintf(&b, "  clickhouse-client %8.0f rows/s  %v\n", r.ClientMedian, round0(r.ClientRowsPerS))
	fmt.Fprintf(&b, "  http POST         %8.0f rows/s  %v\n", r.HTTPMedian, round0(r.HTTPRowsPerS))
	fmt.Fprintf(&b, "  writer / client   %.2f; server CPU during writer runs %.1f us/row\n", r.RatioWriterClient, r.ServerCPUUsPerRow)
	fmt.Fprintf(&b, "  notes: %s\n", r.Notes)
	return b.String()
}

func round0(v []float64) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x + 0.5)
	}
	return out
}
