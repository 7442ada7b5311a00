// Command chinsert measures rows/s into ClickHouse through the relay's
// chlog.Writer against the same Native blocks sent by clickhouse-client
// (native TCP protocol) and by a plain net/http POST, on the same server,
// interleaved in rounds, and writes the result as JSON (scenario 6 of
// bench/run.sh; issue 12 target 6).
//
//	go run ./bench/chinsert -out chinsert.json [-rows 20000] [-rounds 5]
//
// The server is RELAY_TEST_CLICKHOUSE_URL (default http://127.0.0.1:18123);
// clickhouse-client talks to its native port (-tcp-port, else
// RELAY_CLICKHOUSE_TCP_PORT, else the --tcp_port= on the server's command
// line, else 9000). The program creates a private database, drops it at
// the end, and never touches another.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// config is what a run needs; flags fill it.
type config struct {
	url        string
	tcpHost    string
	tcpPort    int
	clientPath string
	clientArgs []string
	rows       int
	rounds     int
	blockRows  int
	cpuProfile string // pprof CPU profile of the writer runs only
	timeout    time.Duration
}

func main() {
	var c config
	var clientArgs, out string
	flag.StringVar(&c.url, "url", envOr("RELAY_TEST_CLICKHOUSE_URL", "http://127.0.0.1:18123"), "ClickHouse HTTP URL")
	flag.StringVar(&c.tcpHost, "tcp-host", "127.0.0.1", "ClickHouse native host for clickhouse-client")
	flag.IntVar(&c.tcpPort, "tcp-port", 0, "ClickHouse native TCP port (0: RELAY_CLICKHOUSE_TCP_PORT, else the server's --tcp_port, else 9000)")
	flag.StringVar(&c.clientPath, "client", "clickhouse-client", "clickhouse-client binary")
	flag.StringVar(&clientArgs, "client-args", "", "extra arguments for clickhouse-client, space separated (e.g. \"--user u\")")
	flag.IntVar(&c.rows, "rows", 20000, "rows per method per round")
	flag.IntVar(&c.rounds, "rounds", 5, "rounds; the methods run interleaved, in a rotated order each round (the machine is noisy: five give a steadier median)")
	flag.IntVar(&c.blockRows, "block-rows", 2000, "rows per Native block, for the writer (its BatchRows) and the other clients alike")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the writer runs to this file")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
	flag.StringVar(&out, "out", "", "write the JSON result to this file")
	flag.Parse()
	c.clientArgs = strings.Fields(clientArgs)
	if c.tcpPort == 0 {
		c.tcpPort, _ = strconv.Atoi(os.Getenv("RELAY_CLICKHOUSE_TCP_PORT"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	res, err := run(ctx, &c, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chinsert:", err)
		os.Exit(1)
	}
	fmt.Print(res.summary())
	if out != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "chinsert:", err)
			os.Exit(1)
		}
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
