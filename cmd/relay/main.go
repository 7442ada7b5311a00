// Command relay runs stream-relay: bin/relay -config configs/config.yaml.
//
// Subcommands work on what the relay stored (relay help lists them):
//
//	relay show REQUEST_ID [-config FILE] [--json]   one stored request, whole
//	relay spool ls [-config FILE]                   queued and rejected spool files
//	relay spool replay [--rejected] [-config FILE]  send spool files to ClickHouse now
//	relay reparse [-config FILE] [--since TIME] [--route NAME] [--dry-run]
//	                                                recompute ttft_ms, tokens and model of stored rows
//	relay health [-url URL]                         exit 0 when a running relay is ready
//	relay help [COMMAND]                            the usage, or a command's
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/app"
)

func main() {
	err := run(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", termSafe(err.Error())) // an error may quote bytes from disk
	}
	os.Exit(exitCode(err))
}

// Exit statuses. Every command exits 0 on success and exitFailed on
// failure; relay show tells a clean miss (exitFailed: retrying may help)
// from a lookup that could not be made (exitShowError).
const (
	exitFailed    = 1
	exitShowError = 2
)

// exitError is an error that ends relay with a status other than exitFailed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCode is the process status for run's error.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code
	}
	return exitFailed
}

func run(args []string) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		if args[0] == "help" {
			return runHelp(args[1:])
		}
		c := findCommand(args[0])
		if c == nil {
			return fmt.Errorf("unknown command %q: commands are %s; flags alone (e.g. -config FILE) serve (relay help)", args[0], commandNames())
		}
		return c.run(args[1:])
	}
	return serve(args)
}

// serveFlags defines serve's flags on fs.
func serveFlags(fs *flag.FlagSet) (configPath, envFile *string) {
	configPath = fs.String("config", "configs/config.yaml", "configuration file (YAML)")
	envFile = fs.String("env-file", ".env", "KEY=VALUE file loaded into the environment if present")
	return configPath, envFile
}

// serve runs the relay until SIGINT or SIGTERM; SIGHUP reloads the
// configuration file and the env file.
func serve(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // -h prints the usage below; errors carry a pointer to it
	configPath, envFile := serveFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return printUsage(stdout)
		}
		return fmt.Errorf("%w (relay help: usage and commands)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: commands are %s; flags alone serve (relay help)", fs.Arg(0), commandNames())
	}

	_, processGOGC := os.LookupEnv("GOGC") // before the env file may set it
	if err := app.LoadEnvFile(*envFile); err != nil {
		return err
	}
	cfg, err := app.Load(*configPath)
	if err != nil {
		return err
	}
	log := app.NewLogger(cfg, os.Stderr)
	slog.SetDefault(log)
	if p, fromEnv := app.SetGCPercent(cfg, processGOGC); fromEnv {
		log.Info("GOGC set: server.gc_percent ignored", "gc_percent", p)
	}
	// A SIGHUP is taken from here on: one during start-up (schema checks,
	// WAL recovery, the Redis dial) waits for the loop below instead of
	// killing the process. SIGINT and SIGTERM keep their default until
	// the relay serves: a start-up has nothing in flight, and one that
	// hangs on an unreachable dependency must stay easy to stop. From then
	// on every signal is the loop's, and during the drain one is logged,
	// never the default exit that would cut the streams and lose the rows
	// in hand. The buffer keeps a SIGTERM that follows SIGHUPs during a
	// slow reload.
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGHUP)
	defer signal.Stop(sig)
	a, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	ln, err := a.Listen()
	if err != nil {
		return err
	}
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	served := make(chan error, 1)
	go func() { served <- a.Serve(ln) }()

	var serveErr error
	serving := true // Serve has not returned
wait:
	for {
		select {
		case serveErr = <-served:
			// The listener failed (accept errors fasthttp takes as
			// permanent): the streams in flight and the rows in hand still
			// end as on SIGTERM.
			log.Error("the relay's listener failed; shutting down", "err", serveErr)
			serving = false
			break wait
		case s := <-sig:
			if s == syscall.SIGHUP {
				// Reload logs its outcome; a refused file keeps the running config.
				_ = a.Reload(*configPath, *envFile)
				continue
			}
			log.Info("signal received", "signal", s.String())
			break wait
		}
	}
	draining := make(chan struct{})
	defer close(draining)
	go func() {
		for {
			select {
			case s := <-sig:
				log.Warn("signal ignored: shutting down already", "signal", s.String())
			case <-draining:
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace+30*time.Second)
	defer cancel()
	err = errors.Join(serveErr, a.Shutdown(ctx))
	if serving {
		if serr := <-served; serr != nil && !errors.Is(serr, context.Canceled) {
			err = errors.Join(err, serr)
		}
	}
	return err
}
