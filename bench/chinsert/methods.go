package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/ch-go/compress"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/record"
)

// writerRun writes rows through a fresh chlog.Writer into db.table as fast
// as Write takes them, flushes, and returns the time from the first Write
// until every row was inserted (counted by OnInsert, so rows the writer
// spooled while its sender was busy count once the replayer inserted
// them), and how many rows went through the spool. flushEach: Flush after
// every block instead, so that each block is its own insert and none
// waits for the sender.
func writerRun(ctx context.Context, url, db, table string, blockRows int, rows []*record.Record, flushEach bool) (time.Duration, int64, error) {
	dir, err := os.MkdirTemp("", "chinsert-spool-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	want := int64(len(rows))
	var inserted atomic.Int64
	done := make(chan struct{})
	w, err := chlog.New(chlog.Options{
		URL: url, Database: db, Table: table, BatchRows: blockRows, SpoolDir: dir,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		OnInsert: func(_ time.Duration, n int, err error) {
			if err == nil && inserted.Add(int64(n)) == want {
				close(done)
			}
		},
	})
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	for i, r := range rows {
		if err := w.Write(r); err != nil {
			_ = w.Close(ctx)
			return 0, 0, err
		}
		if flushEach && (i+1)%blockRows == 0 {
			if err := w.Flush(ctx); err != nil {
				_ = w.Close(ctx)
				return 0, 0, fmt.Errorf("writer: flush: %w", err)
			}
		}
	}
	ferr := w.Flush(ctx)
	select {
	case <-done:
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	st := w.Stats()
	cerr := w.Close(ctx)
	if ctx.Err() != nil {
		return 0, 0, fmt.Errorf("writer: %d of %d rows inserted: %w (flush: %v)", inserted.Load(), want, ctx.Err(), ferr)
	}
	if cerr != nil {
		return 0, 0, fmt.Errorf("writer: close: %w", cerr)
	}
	return elapsed, st.RowsSpooled, nil
}

// clientRun pipes blocks into clickhouse-client ... --query "INSERT INTO
// db.table FORMAT Native": all of them into one process, or (perBlock) one
// process per block.
func clientRun(ctx context.Context, c *config, target string, blocks [][]byte, perBlock bool) (time.Duration, error) {
	start := time.Now()
	if perBlock {
		for _, b := range blocks {
			if err := runClient(ctx, c, target, [][]byte{b}); err != nil {
				return 0, err
			}
		}
	} else if err := runClient(ctx, c, target, blocks); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func runClient(ctx context.Context, c *config, target string, blocks [][]byte) error {
	args := append([]string{"--host", c.tcpHost, "--port", strconv.Itoa(c.tcpPort)}, c.clientArgs...)
	args = append(args, "--query", "INSERT INTO "+target+" FORMAT Native")
	cmd := exec.CommandContext(ctx, c.clientPath, args...)
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("clickhouse-client: %w", err)
	}
	var werr error
	for _, b := range blocks {
		if _, werr = in.Write(b); werr != nil {
			break
		}
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("clickhouse-client: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if werr != nil {
		return fmt.Errorf("clickhouse-client: stdin: %w", werr)
	}
	return nil
}

// httpRun POSTs each block to the HTTP interface with net/http, one
// request per block: uncompressed, or (lz4) in ClickHouse's LZ4 framing
// with decompress=1, as the writer sends them.
func httpRun(ctx context.Context, hc *http.Client, base, target string, blocks [][]byte, lz4 bool) (time.Duration, error) {
	q := url.Values{"query": {"INSERT INTO " + target + " FORMAT Native"}}
	if lz4 {
		q.Set("decompress", "1")
	}
	u := base + "/?" + q.Encode()
	zw := compress.NewWriter(compress.LevelZero, compress.LZ4)
	var zbuf []byte
	start := time.Now()
	for _, b := range blocks {
		body := b
		if lz4 {
			zbuf = zbuf[:0]
			for p := b; len(p) > 0; {
				n := min(len(p), 1<<20)
				if err := zw.Compress(p[:n]); err != nil {
					return 0, err
				}
				zbuf = append(zbuf, zw.Data...)
				p = p[n:]
			}
			body = zbuf
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("http insert: %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
		}
	}
	return time.Since(start), nil
}
