package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stream-relay/stream-relay/app"
	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/record"
)

const reparseUsage = "usage: relay reparse [-config FILE] [--since TIME] [--route NAME] [--dry-run]"

// reparseStatus ends reparse's -h.
var reparseStatus = fmt.Sprintf(`
exit status: 0 done, %d failed (nothing is printed on stdout when no row
could be read, e.g. ClickHouse unreachable; counts printed before an error
are partial and say so)
`, exitFailed)

// runReparse recomputes ttft_ms, tokens_in, tokens_out and model of stored
// rows from their stored bytes with the relay's current scanners and
// writes the values that changed.
func runReparse(args []string) error { return runReparseTo(args, stdout, time.Now()) }

// runReparseTo is runReparse printing to w, with now the time --since
// durations count back from.
func runReparseTo(args []string, w io.Writer, now time.Time) error {
	fs := flag.NewFlagSet("relay reparse", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // -h prints the usage to w; errors point to it
	configPath := fs.String("config", "configs/config.yaml", "configuration file (YAML): where the relay stores rows, and the routes' kinds")
	envFile := fs.String("env-file", ".env", "KEY=VALUE file loaded into the environment if present")
	since := fs.String("since", "", "only rows created at or after TIME: RFC 3339 (2026-11-30T08:00:00Z), a date (2026-11-30, UTC) or a duration back from now (24h)")
	route := fs.String("route", "", "only rows of this route")
	dryRun := fs.Bool("dry-run", false, "count the changes, write nothing")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return printFlagUsage(w, fs, reparseUsage+"\n\nflags:\n", reparseStatus)
		}
		return fmt.Errorf("reparse: %w (relay reparse -h)", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("reparse: unexpected argument %q: %s", fs.Arg(0), reparseUsage)
	}
	from, err := parseSince(*since, now)
	if err != nil {
		return err
	}
	if err := app.LoadEnvFile(*envFile); err != nil {
		return err
	}
	cfg, err := app.Load(*configPath)
	if err != nil {
		return err
	}
	ch := cfg.Storage.ClickHouse
	urls := ch.URLs
	if len(urls) == 0 && ch.URL != "" {
		urls = []string{ch.URL}
	}
	if len(urls) == 0 {
		return errors.New("reparse: storage.clickhouse.url is not set: rows in embedded mode (spool files only) cannot be rewritten")
	}
	kinds := map[string]record.Kind{}
	wsRoutes := map[string]bool{}
	for _, r := range cfg.Routes {
		if r.Kind == "ws" {
			wsRoutes[r.Name] = true
			continue // a WebSocket session's row is not derived by stream rules: skipped
		}
		kinds[r.Name] = record.KindSSE
		if r.Kind == "raw" {
			kinds[r.Name] = record.KindRaw
		}
	}
	if *route != "" {
		if _, ok := kinds[*route]; !ok && wsRoutes[*route] {
			return fmt.Errorf("reparse: route=%q: a ws route; its sessions' rows are not derived from stream rules, so reparse never reads them", *route)
		} else if !ok {
			return fmt.Errorf("reparse: route=%q: not in %s (its kind decides how its rows are read)", *route, *configPath)
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := chlog.Reparse(ctx, chlog.ReparseOptions{
		URLs:     urls,
		Cluster:  ch.Cluster,
		Database: ch.Database,
		Table:    ch.Table,
		User:     ch.User,
		Password: ch.Password,
		Since:    from,
		Route:    *route,
		Kinds:    kinds,
		DryRun:   *dryRun,
		Note:     func(line string) { fmt.Fprintln(stderr, "relay: reparse: "+termSafe(line)) },
	})
	if err != nil {
		if res == nil || res.Rows == 0 && res.Mutations == 0 {
			// Nothing was read: a summary of zeros would look like a clean run.
			shown := make([]string, len(urls))
			for i, u := range urls {
				shown[i] = chlog.RedactURL(u)
			}
			return fmt.Errorf("reparse: no rows read (ClickHouse at %s): %w", strings.Join(shown, ", "), err)
		}
		printReparse(w, res, *dryRun, true)
		return fmt.Errorf("reparse: stopped after %d rows read: %w", res.Rows, err)
	}
	printReparse(w, res, *dryRun, false)
	return nil
}

// printReparse writes what a run read and changed; stopped says an error
// ended it early, so the counts are partial.
func printReparse(w io.Writer, res *chlog.ReparseResult, dryRun, stopped bool) {
	verb := "changed"
	if dryRun {
		verb = "would change"
	}
	fmt.Fprintf(w, "rows read: %d", res.Rows)
	if res.Skipped > 0 {
		// chlog skips a row whose route has no kind in Kinds: a ws
		// route's (left out above), a route no longer in the config, and
		// route '' (a request no route matched).
		fmt.Fprintf(w, " (%d skipped: of ws routes, of routes not in the config, or of requests no route matched)", res.Skipped)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "rows %s: %d\n", verb, res.Changed)
	for _, c := range []struct {
		name string
		n    int
	}{{"ttft_ms", res.TTFT}, {"tokens_in", res.TokensIn}, {"tokens_out", res.TokensOut}, {"model", res.Model}, {"error_type", res.ErrorType}} {
		fmt.Fprintf(w, "  %-10s %d\n", c.name, c.n)
	}
	switch {
	case stopped && dryRun:
		fmt.Fprintln(w, "stopped early by the error below: partial counts; dry run: nothing written")
	case stopped:
		fmt.Fprintf(w, "stopped early by the error below: partial counts; mutations sent: %d\n", res.Mutations)
	case dryRun:
		fmt.Fprintln(w, "dry run: nothing written")
	default:
		fmt.Fprintf(w, "mutations: %d (finished)\n", res.Mutations)
	}
}

// parseSince reads --since: RFC 3339, a date or date and time (UTC), or a
// duration back from now. "" is the zero time (every row).
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("reparse: since=%q: a duration must be positive", s)
		}
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("reparse: since=%q: want RFC 3339 (2026-11-30T08:00:00Z), a date (2026-11-30) or a duration (24h)", s)
}
