// Command relay runs stream-relay: bin/relay -config configs/config.yaml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/app"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

func run() error {
	configPath := flag.String("config", "configs/config.yaml", "configuration file (YAML)")
	envFile := flag.String("env-file", ".env", "KEY=VALUE file loaded into the environment if present")
	flag.Parse()

	if err := app.LoadEnvFile(*envFile); err != nil {
		return err
	}
	cfg, err := app.Load(*configPath)
	if err != nil {
		return err
	}
	log := app.NewLogger(cfg, os.Stderr)
	slog.SetDefault(log)
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
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-served:
		return err
	case s := <-sig:
		log.Info("signal received", "signal", s.String())
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
