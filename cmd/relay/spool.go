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
	"path/filepath"
	"syscall"
	"text/tabwriter"

	"github.com/stream-relay/stream-relay/app"
	"github.com/stream-relay/stream-relay/chlog"
)

const spoolUsage = `usage:
  relay spool ls [-config FILE] [-verify]
      list the spool_dir: queued files (oldest first), WAL segments not yet
      queued (state wal: a relay stopped or crashed with durability wal left
      them) and rejected/ files, with rows, bytes, first and last request id
      and, for rejected files, why.
      -verify reads every queued file and says which the relay would reject.
  relay spool replay [-rejected] [-config FILE] [-v]
      queue the rows of WAL segments left in the spool_dir (as a relay's start
      does), then send the queued files to the configured ClickHouse now,
      oldest first, with the relay's checks: a file that can never be inserted
      as it is goes to rejected/. -rejected first verifies the rejected files again and puts the
      ones that pass back into the queue. Stops at the first failure.
      replay takes the spool_dir's lock: stop the relay that uses the same
      spool_dir first (a running relay replays by itself once ClickHouse answers).
A spool_dir that does not exist holds nothing: ls lists it as empty and replay
sends nothing, each with a note on stderr (exit 0).
exit status: 0 done, 1 failed`

// spoolNotes takes the spool subcommands' notes that are not their output
// (a missing spool_dir): stderr, swapped by tests.
var spoolNotes io.Writer = os.Stderr

// runSpool lists or replays spool files: relay spool ls|replay [--rejected] [-config FILE].
func runSpool(args []string) error {
	if len(args) == 0 {
		return errors.New("spool: want a subcommand (ls or replay)\n" + spoolUsage)
	}
	// A damaged file's column names, quoted in its reason, are bytes from
	// disk: shown escaped (termSafe), as relay show shows stored bytes.
	out := termWriter{stdout}
	switch args[0] {
	case "ls":
		return spoolLs(args[1:], out)
	case "replay":
		return spoolReplay(args[1:], out)
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(stdout, spoolUsage)
		return nil
	}
	return fmt.Errorf("spool: unknown subcommand %q\n%s", args[0], spoolUsage)
}

// spoolFlags parses the flags common to the spool subcommands and loads the
// configuration. With -h it prints the subcommand's usage to out and
// returns nil, nil: the command is done, successfully.
func spoolFlags(name string, args []string, out io.Writer, more func(fs *flag.FlagSet)) (*app.Config, error) {
	fs := flag.NewFlagSet("relay spool "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // the error below carries the usage
	configPath := fs.String("config", "configs/config.yaml", "configuration file (YAML)")
	envFile := fs.String("env-file", ".env", "KEY=VALUE file loaded into the environment if present")
	if more != nil {
		more(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, printFlagUsage(out, fs, spoolUsage+"\n\nflags of spool "+name+":\n", "")
		}
		return nil, fmt.Errorf("spool %s: %w\n%s", name, err, spoolUsage)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("spool %s: unexpected argument %q\n%s", name, fs.Arg(0), spoolUsage)
	}
	if err := app.LoadEnvFile(*envFile); err != nil {
		return nil, err
	}
	return app.Load(*configPath)
}

func spoolLs(args []string, out io.Writer) error {
	var verify bool
	cfg, err := spoolFlags("ls", args, out, func(fs *flag.FlagSet) {
		fs.BoolVar(&verify, "verify", false, "read and check every queued file")
	})
	if err != nil || cfg == nil {
		return err
	}
	dir := cfg.Storage.SpoolDir
	missing, err := chlog.SpoolDirMissing(dir)
	if err != nil {
		return fmt.Errorf("spool ls: %w", err)
	}
	var ents []chlog.SpoolEntry
	if missing {
		fmt.Fprintf(spoolNotes, "relay spool ls: spool_dir %s does not exist: nothing spooled, listed as empty\n", dir)
	} else if ents, err = chlog.ListSpool(dir, verify); err != nil {
		return fmt.Errorf("spool ls: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tFILE\tROWS\tBYTES\tFIRST REQUEST ID\tLAST REQUEST ID\tREASON")
	var queued, rejected, walSegs, walRows int
	for _, e := range ents {
		state := "queued"
		switch {
		case e.Rejected:
			state = "rejected"
			rejected++
		case e.WAL && e.Spooled:
			state = "wal(queued)"
		case e.WAL:
			state = "wal"
			walSegs++
			walRows += max(e.Rows, 0)
		default:
			queued++
		}
		if e.OutcomeUnknown {
			state += "(u)"
		}
		rows := "?"
		if e.Rows >= 0 {
			rows = fmt.Sprint(e.Rows)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", state, e.File, rows, e.Bytes, dash(e.First), dash(e.Last), dash(e.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: %d queued, %d rejected (in %s)\n", dir, queued, rejected, filepath.Join(dir, "rejected"))
	if walSegs > 0 {
		fmt.Fprintf(out, "%s: %d WAL segment(s) with %d row(s), not yet queued: the relay's next start or relay spool replay queues them\n",
			filepath.Join(dir, "wal"), walSegs, walRows)
	}
	return nil
}

func spoolReplay(args []string, out io.Writer) error {
	var rejected, verbose bool
	cfg, err := spoolFlags("replay", args, out, func(fs *flag.FlagSet) {
		fs.BoolVar(&rejected, "rejected", false, "verify rejected files again and send those that pass")
		fs.BoolVar(&verbose, "v", false, "also print the storage log to stderr")
	})
	if err != nil || cfg == nil {
		return err
	}
	ch := cfg.Storage.ClickHouse
	if ch.URL == "" && len(ch.URLs) == 0 {
		return errors.New("spool replay: storage.clickhouse.url is not set in the configuration: nowhere to send the spool to")
	}
	// A missing spool_dir holds nothing to send: no lock taken, no
	// directory created, ClickHouse not asked.
	switch missing, err := chlog.SpoolDirMissing(cfg.Storage.SpoolDir); {
	case err != nil:
		return fmt.Errorf("spool replay: %w", err)
	case missing:
		fmt.Fprintf(spoolNotes, "relay spool replay: spool_dir %s does not exist: nothing to replay\n", cfg.Storage.SpoolDir)
		return nil
	}
	log := slog.New(slog.DiscardHandler)
	if verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	_, err = chlog.ReplaySpool(ctx, chlog.Options{
		URL:           ch.URL,
		URLs:          ch.URLs,
		Cluster:       ch.Cluster,
		Database:      ch.Database,
		Table:         ch.Table,
		User:          ch.User,
		Password:      ch.Password,
		InsertTimeout: ch.InsertTimeout,
		SpoolDir:      cfg.Storage.SpoolDir,
		SpoolMaxBytes: ch.SpoolMaxBytes,
		TTLDays:       ch.TTLDays,
		NoMigrate:     ch.Migrate != nil && !*ch.Migrate,
		Logger:        log,
	}, rejected, out)
	if err != nil {
		return fmt.Errorf("spool replay: %w", err)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// termWriter writes what it is given through termSafe: control characters
// and bytes that are not UTF-8 escaped. Each write is whole lines (or a
// tabwriter's flush of them), so no character is split between two.
type termWriter struct{ w io.Writer }

func (t termWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(t.w, termSafe(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
