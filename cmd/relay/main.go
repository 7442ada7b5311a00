// Command relay runs stream-relay: bin/relay -config configs/config.yaml.
//
// Subcommands work on what the relay stored:
//
//	relay show REQUEST_ID [-config FILE] [--json]   one stored request, whole
//	relay spool ls [-config FILE]                   queued and rejected spool files
//	relay spool replay [--rejected] [-config FILE]  send spool files to ClickHouse now
//	relay reparse [-config FILE] [--since TIME] [--route NAME] [--dry-run]
//	                                                recompute ttft_ms, tokens and model of stored rows
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/app"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

// commands are the subcommands; with none, relay serves.
var commands = map[string]func(args []string) error{
	"show":    runShow,
	"spool":   runSpool,
	"reparse": runReparse,
}

func run(args []string) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, ok := commands[args[0]]
		if !ok {
			return fmt.Errorf("unknown command %q: commands are show, spool, reparse; flags alone (e.g. -config FILE) serve", args[0])
		}
		return cmd(args[1:])
	}
	return serve(args)
}

// serve runs the relay until SIGINT or SIGTERM; SIGHUP reloads the
// configuration file and the env file.
func serve(args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	configPath := fs.String("config", "configs/config.yaml", "configuration file (YAML)")
	envFile := fs.String("env-file", ".env", "KEY=VALUE file loaded into the environment if present")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: commands are show, spool, reparse; flags alone serve", fs.Arg(0))
	}

	if err := app.LoadEnvFile(*envFile); err != nil {
		return err
	}
	cfg, err := app.Load(*configPath)
	if err != nil {
		return err
	}
	log := app.NewLogger(cfg, os.Stderr)
	slog.SetDefault(log)
	if p, fromEnv := app.SetGCPercent(cfg); fromEnv {
		log.Info("GOGC set: server.gc_percent ignored", "gc_percent", p)
	}
	a, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	ln, err := a.Listen()
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- a.Serve(ln) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
wait:
	for {
		select {
		case err := <-served:
			return err
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
	signal.Stop(sig)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownGrace+30*time.Second)
	defer cancel()
	err = a.Shutdown(ctx)
	if serr := <-served; serr != nil && !errors.Is(serr, context.Canceled) {
		err = errors.Join(err, serr)
	}
	return err
}
