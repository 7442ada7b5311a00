// Command mockllm runs the mock upstream LLM/TTS server of package
// bench/mockllm for the demo and benchmarks.
//
//	mockllm -addr 127.0.0.1:9090 -require-key sk-test
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/bench/mockllm"
)

// shutdownGrace bounds how long a stop waits for streams in progress.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mockllm:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then stops gracefully. It prints the base URL
// to log once listening.
func run(ctx context.Context, args []string, log io.Writer) error {
	fs := flag.NewFlagSet("mockllm", flag.ContinueOnError)
	fs.SetOutput(log)
	addr := fs.String("addr", "127.0.0.1:9090", "listen address")
	key := fs.String("require-key", "", "API key requests must carry (Bearer or x-api-key); none when empty")
	if err := fs.Parse(args); err != nil {
		return err
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := mockllm.New(mockllm.Options{RequireKey: *key})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Fprintf(log, "mockllm: listening on http://%s\n", ln.Addr())

	select {
	case err := <-served:
		_ = srv.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	err = srv.Shutdown(sctx)
	if cerr := srv.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil // streams still open after the grace period were cut
	}
	if serr := <-served; err == nil {
		err = serr
	}
	return err
}
