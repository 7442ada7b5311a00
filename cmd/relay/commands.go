package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one subcommand of relay.
type command struct {
	name    string
	args    string // what follows the name in the usage line
	summary string // one line: what it does
	run     func(args []string) error
}

// commands are the subcommands, in the order the usage lists them; with
// none, relay serves. help is run's own (it reads this list).
var commands = []command{
	{"show", "REQUEST_ID", "print one stored request, whole: row, headers, bodies, events and their text", runShow},
	{"spool", "ls|replay", "list the queued and rejected spool files, or send them to ClickHouse now", runSpool},
	{"reparse", "", "recompute ttft_ms, tokens and model of stored rows from their stored bytes", runReparse},
	{"health", "[-url URL]", "ask a running relay whether it is ready (its /readyz): exit 0 when it is", runHealth},
}

func findCommand(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// commandNames is "show, spool, reparse, health, help".
func commandNames() string {
	names := make([]string, 0, len(commands)+1)
	for _, c := range commands {
		names = append(names, c.name)
	}
	return strings.Join(append(names, "help"), ", ")
}

// printUsage writes relay's usage: how to serve, the commands, serve's
// flags and the exit statuses.
func printUsage(w io.Writer) error {
	var b strings.Builder
	b.WriteString(`usage:
  relay [-config FILE] [-env-file FILE]   serve: run the relay (SIGHUP reloads, SIGINT or SIGTERM drain and stop)
  relay COMMAND [ARGS]                    work on what the relay stored
  relay help [COMMAND]                    this usage, or a command's (also relay COMMAND -h)

commands:
`)
	for _, c := range append(commands, command{name: "help", args: "[COMMAND]", summary: "print this usage, or a command's"}) {
		fmt.Fprintf(&b, "  %-22s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	b.WriteString("\nflags (serve):\n")
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	serveFlags(fs)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fmt.Fprintf(&b, "\nexit status: 0 success, %d failure; relay show: %d not found, %d lookup failed or other error (relay help show)\n", exitFailed, exitFailed, exitShowError)
	_, err := io.WriteString(w, b.String())
	return err
}

// runHelp is relay help [COMMAND]: the usage, or the command's own (its -h).
func runHelp(args []string) error {
	switch {
	case len(args) == 0 || len(args) == 1 && args[0] == "help":
		return printUsage(stdout)
	case len(args) > 1:
		return fmt.Errorf("help: want at most one command, got %q (relay help)", strings.Join(args, " "))
	}
	c := findCommand(args[0])
	if c == nil {
		return fmt.Errorf("help: unknown command %q: commands are %s", args[0], commandNames())
	}
	return c.run([]string{"-h"})
}

// printFlagUsage writes a command's -h: head, fs's flags, then tail.
func printFlagUsage(w io.Writer, fs *flag.FlagSet, head, tail string) error {
	var b strings.Builder
	b.WriteString(head)
	fs.SetOutput(&b)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
	b.WriteString(tail)
	_, err := io.WriteString(w, b.String())
	return err
}
