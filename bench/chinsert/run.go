package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/chlog"
)

// The methods compared; each run inserts the same rows into an empty table.
const (
	mWriter      = "writer"        // chlog.Writer end to end
	mWriterOne   = "writer_single" // the same, blocks never gathered into one insert
	mWriterFlush = "writer_flush"  // Flush after every block: one insert per block, nothing spooled
	mClient      = "client"        // one clickhouse-client for all blocks
	mClientBlock = "client_block"  // one clickhouse-client per block
	mHTTP        = "http"          // net/http POST per block, uncompressed
	mHTTPLZ4     = "http_lz4"      // net/http POST per block, LZ4 as the writer sends
	mHTTPAll     = "http_one"      // one net/http POST of all blocks back to back, LZ4
)

var methods = []string{mWriter, mClient, mHTTP, mWriterOne, mClientBlock, mHTTPLZ4, mWriterFlush, mHTTPAll}

// sample is one method's totals over the rounds.
type sample struct {
	rowsPerS  []float64
	serverCPU time.Duration // clickhouse-server's CPU time during the runs
	selfCPU   time.Duration // this process's and its children's CPU time
	rows      int
	spooled   int64
}

// run measures every method c.rounds times, interleaved, and returns the
// result. Progress goes to log.
func run(ctx context.Context, c *config, log io.Writer) (*result, error) {
	if c.rows <= 0 || c.rounds <= 0 || c.blockRows <= 0 {
		return nil, errors.New("rows, rounds and block-rows must be > 0")
	}
	srv, err := newServer(ctx, c.url)
	if err != nil {
		return nil, err
	}
	if c.tcpPort == 0 {
		_, c.tcpPort = findServer(srv.url)
		if c.tcpPort == 0 {
			c.tcpPort = 9000
		}
	}
	if _, err := exec.LookPath(c.clientPath); err != nil {
		return nil, fmt.Errorf("clickhouse-client: %w", err)
	}
	seed := uint64(time.Now().UnixNano())
	db := fmt.Sprintf("chinsert_%d_%d", os.Getpid(), seed%1e6)
	const table = "stream_logs"
	target := db + "." + table
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = srv.query(dctx, "DROP DATABASE IF EXISTS "+db)
	}()

	rows := makeRows(c.rows, seed)
	blocks, err := chlog.EncodeBlocks(rows, c.blockRows)
	if err != nil {
		return nil, err
	}
	res := &result{Rows: c.rows, RowBytes: rowBytes(blocks, c.rows), BlockRows: c.blockRows, Rounds: c.rounds}

	// The writer creates the table with the relay's own schema.
	if err := createSchema(ctx, srv.url, db, table); err != nil {
		return nil, err
	}
	var prof *os.File
	if c.cpuProfile != "" {
		if prof, err = os.Create(c.cpuProfile); err != nil {
			return nil, err
		}
		defer prof.Close()
	}
	hc := &http.Client{Timeout: 5 * time.Minute}
	got := map[string]*sample{}
	for _, m := range methods {
		got[m] = &sample{}
	}
	for round := range c.rounds {
		for k := range methods {
			m := methods[(k+round)%len(methods)]
			if _, err := srv.query(ctx, "TRUNCATE TABLE "+target); err != nil {
				return nil, err
			}
			s := got[m]
			cpu0, self0 := procCPU(srv.pid), selfCPU()
			var d time.Duration
			var spooled int64
			switch m {
			case mWriter:
				if prof != nil {
					if err := pprof.StartCPUProfile(prof); err != nil {
						return nil, err
					}
				}
				d, spooled, err = writerRun(ctx, srv.url, db, table, c.blockRows, rows, false)
				if prof != nil {
					pprof.StopCPUProfile()
					prof.Close()
					prof = nil // one writer run profiled: the first
				}
			case mWriterOne:
				chlog.SetCoalescing(false)
				d, spooled, err = writerRun(ctx, srv.url, db, table, c.blockRows, rows, false)
				chlog.SetCoalescing(true)
			case mWriterFlush:
				d, spooled, err = writerRun(ctx, srv.url, db, table, c.blockRows, rows, true)
			case mClient, mClientBlock:
				d, err = clientRun(ctx, c, target, blocks, m == mClientBlock)
			case mHTTP, mHTTPLZ4:
				d, err = httpRun(ctx, hc, srv.url, target, blocks, m == mHTTPLZ4)
			case mHTTPAll:
				d, err = httpRun(ctx, hc, srv.url, target, [][]byte{bytes.Join(blocks, nil)}, true)
			}
			if err != nil {
				return nil, fmt.Errorf("round %d, %s: %w", round+1, m, err)
			}
			s.serverCPU += procCPU(srv.pid) - cpu0
			s.selfCPU += selfCPU() - self0
			s.rows += c.rows
			s.spooled += spooled
			n, err := srv.count(ctx, target)
			if err != nil {
				return nil, err
			}
			if n != c.rows {
				return nil, fmt.Errorf("round %d, %s: count() = %d, want %d", round+1, m, n, c.rows)
			}
			rate := float64(c.rows) / d.Seconds()
			s.rowsPerS = append(s.rowsPerS, rate)
			fmt.Fprintf(log, "round %d %-12s %8.0f rows/s  (%v)\n", round+1, m, rate, d.Round(time.Millisecond))
		}
	}
	res.WriterRowsPerS = got[mWriter].rowsPerS
	res.ClientRowsPerS = got[mClient].rowsPerS
	res.HTTPRowsPerS = got[mHTTP].rowsPerS
	res.WriterMedian = median(res.WriterRowsPerS)
	res.ClientMedian = median(res.ClientRowsPerS)
	res.HTTPMedian = median(res.HTTPRowsPerS)
	if res.ClientMedian > 0 {
		res.RatioWriterClient = res.WriterMedian / res.ClientMedian
	}
	if srv.pid > 0 {
		res.ServerCPUUsPerRow = perRow(got[mWriter].serverCPU, got[mWriter].rows)
	}
	res.Notes = notes(c, srv, got)
	return res, nil
}

// createSchema makes db.table the way the relay does: a Writer with
// migrations on creates the database and table at New.
func createSchema(ctx context.Context, url, db, table string) error {
	dir, err := os.MkdirTemp("", "chinsert-spool-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w, err := chlog.New(chlog.Options{URL: url, Database: db, Table: table, SpoolDir: dir})
	if err != nil {
		return err
	}
	return w.Close(ctx)
}

func perRow(d time.Duration, rows int) float64 {
	if rows == 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(rows)
}

// selfCPU is the user+system CPU time of this process and its waited-for
// children (clickhouse-client).
func selfCPU() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// notes says what the JSON fields do not: the other methods' medians, CPU
// per row on both sides, spooled rows, how it was measured.
func notes(c *config, srv *server, got map[string]*sample) string {
	var parts []string
	for _, m := range methods {
		s := got[m]
		p := fmt.Sprintf("%s median %.0f rows/s, client-side CPU %.1f us/row", m, median(s.rowsPerS), perRow(s.selfCPU, s.rows))
		if srv.pid > 0 {
			p += fmt.Sprintf(", server CPU %.1f us/row", perRow(s.serverCPU, s.rows))
		}
		if s.spooled > 0 {
			p += fmt.Sprintf(", %d rows went through the spool", s.spooled)
		}
		parts = append(parts, p)
	}
	how := fmt.Sprintf("methods interleaved in rotated order each round, table truncated before each run, count() checked after; client = one clickhouse-client process for all blocks (native TCP port %d), client_block = one process per block; http = uncompressed POST per block, http_lz4 = LZ4-framed (decompress=1) like the writer, http_one = all blocks in one LZ4 POST (one insert); writer_single = the writer with the gathering of waiting blocks into one insert turned off (chlog.SetCoalescing), writer_flush = Flush after every block (one insert per block, no spool); writer time = first Write until OnInsert counted every row", c.tcpPort)
	if srv.pid == 0 {
		how += "; clickhouse-server process not found in /proc: no server CPU"
	}
	return strings.Join(parts, "; ") + ". " + how + "."
}
