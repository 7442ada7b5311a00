package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// relayMainEnv makes the test binary run relay's main instead of the tests,
// so that exit statuses and stderr are the real binary's.
const relayMainEnv = "RELAY_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(relayMainEnv) == "1" {
		main() // exits
	}
	os.Exit(m.Run())
}

// relayExec runs the test binary as `relay args...` and returns its stdout,
// stderr and exit status.
func relayExec(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), relayMainEnv+"=1")
	cmd.Dir = t.TempDir() // no .env or configs/ to pick up by default
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("relay %s: %v", strings.Join(args, " "), err)
	}
	if testing.Verbose() {
		t.Logf("relay %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	return out.String(), errOut.String(), code
}

// closedClickHouse is a loopback URL where nothing listens: a port that was
// listened on and closed.
func closedClickHouse(t *testing.T) string {
	t.Helper()
	return "http://" + servicetest.FreeAddr(t)
}

// TestExitStatus runs the binary: help exits 0 with the usage on stdout and
// nothing on stderr; failures print one "relay:" line and exit 1, except
// show's failures other than a clean miss, which exit 2.
func TestExitStatus(t *testing.T) {
	chURL := closedClickHouse(t)
	const password = "s3cret-qa-password"
	down := writeConfig(t, "  spool_dir: "+t.TempDir()+"\n  clickhouse:\n    url: "+chURL+"\n    user: qa\n    password: "+password+"\n")
	embedded := writeConfig(t, "  spool_dir: "+t.TempDir()+"\n")
	// The password written into the URL, as some operators try.
	inURL := strings.Replace(chURL, "http://", "http://qa:"+password+"@", 1)
	downInURL := writeConfig(t, "  spool_dir: "+t.TempDir()+"\n  clickhouse:\n    url: "+inURL+"\n")
	id := strings.Repeat("ab", 16)
	usage := []string{"usage:", "commands:", "\n  show REQUEST_ID ", "\n  spool ls|replay ", "\n  reparse ", "\n  help [COMMAND] ", "-config", "exit status:"}
	showUsage := []string{"usage: relay show REQUEST_ID", "-json", "exit status:", "\n  1  not found", "\n  2  the lookup could not be made"}
	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     []string // substrings; nil: stdout must be empty
		stderr     []string // substrings; nil: stderr must be empty
		notStderr  []string
		onlyOneErr bool // stderr is the one "relay:" line
	}{
		{name: "-h", args: []string{"-h"}, stdout: usage},
		{name: "--help", args: []string{"--help"}, stdout: usage},
		{name: "-help", args: []string{"-help"}, stdout: usage},
		{name: "help", args: []string{"help"}, stdout: usage},
		{name: "help show", args: []string{"help", "show"}, stdout: showUsage},
		{name: "show -h", args: []string{"show", "-h"}, stdout: showUsage},
		{name: "show --help after id", args: []string{"show", id, "--help"}, stdout: showUsage},
		{name: "help reparse", args: []string{"help", "reparse"}, stdout: []string{"usage: relay reparse", "-dry-run", "exit status:"}},
		{name: "reparse -h", args: []string{"reparse", "-h"}, stdout: []string{"usage: relay reparse", "-dry-run"}},
		{name: "help spool", args: []string{"help", "spool"}, stdout: []string{"relay spool ls", "relay spool replay", "exit status:"}},
		{name: "spool -h", args: []string{"spool", "-h"}, stdout: []string{"relay spool ls"}},
		{name: "spool ls -h", args: []string{"spool", "ls", "-h"}, stdout: []string{"relay spool ls", "flags of spool ls:", "-verify"}},
		{name: "spool replay -h", args: []string{"spool", "replay", "-h"}, stdout: []string{"relay spool replay", "flags of spool replay:", "-rejected"}},
		{name: "help unknown", args: []string{"help", "nosuch"}, code: 1, stderr: []string{`unknown command "nosuch"`, "show, spool, reparse, health, help"}, onlyOneErr: true},
		{name: "unknown command", args: []string{"nosuch"}, code: 1, stderr: []string{`unknown command "nosuch"`, "show, spool, reparse, health, help"}, onlyOneErr: true},
		{name: "unknown flag", args: []string{"-nosuch"}, code: 1, stderr: []string{"flag provided but not defined: -nosuch", "relay help"}, notStderr: []string{"Usage of"}, onlyOneErr: true},
		{name: "show unknown flag", args: []string{"show", "-nosuch"}, code: 2, stderr: []string{"show: flag provided but not defined: -nosuch"}, onlyOneErr: true},
		{name: "show bad id", args: []string{"show", "xyz"}, code: 2, stderr: []string{"request_id"}, onlyOneErr: true},
		{name: "show not found", args: []string{"show", id, "-config", embedded}, code: 1, stderr: []string{"not found", "try again"}, onlyOneErr: true},
		{
			name: "show clickhouse unreachable", args: []string{"show", id, "-config", down}, code: 2,
			stderr:    []string{"could not be looked up", "at " + chURL + ":", "connection refused", "the local files do not hold it"},
			notStderr: []string{"not found", "try again", password}, onlyOneErr: true,
		},
		{
			name: "reparse clickhouse unreachable", args: []string{"reparse", "--dry-run", "-config", down}, code: 1,
			stderr: []string{"reparse: no rows read", chURL, "connection refused"}, notStderr: []string{password}, onlyOneErr: true,
		},
		{
			// Refused by the configuration check, which does not show it.
			name: "reparse, password in the url", args: []string{"reparse", "--dry-run", "-config", downInURL}, code: 1,
			stderr: []string{"storage.clickhouse.url=", "must not carry"}, notStderr: []string{password}, onlyOneErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := relayExec(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			check := func(what, got string, wants []string) {
				if wants == nil && got != "" {
					t.Errorf("%s: want nothing, got:\n%s", what, got)
				}
				for _, w := range wants {
					if !strings.Contains(got, w) {
						t.Errorf("%s lacks %q:\n%s", what, w, got)
					}
				}
			}
			check("stdout", out, tt.stdout)
			check("stderr", errOut, tt.stderr)
			for _, w := range tt.notStderr {
				if strings.Contains(errOut, w) {
					t.Errorf("stderr has %q:\n%s", w, errOut)
				}
			}
			if tt.onlyOneErr && (!strings.HasPrefix(errOut, "relay: ") || strings.Count(errOut, "\n") != 1) {
				t.Errorf("stderr is not one relay: line:\n%s", errOut)
			}
		})
	}
}

// TestUsageListsCommands: the usage has a line for every command, and
// each command's -h works in process (exit 0, usage on stdout).
func TestUsageListsCommands(t *testing.T) {
	var out bytes.Buffer
	if err := runTo([]string{"help"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(out.String(), "\n  "+c.name+" ") || c.summary == "" {
			t.Errorf("usage lacks a line for %q:\n%s", c.name, out.String())
		}
		var cout bytes.Buffer
		if err := runTo([]string{"help", c.name}, &cout); err != nil || !strings.Contains(cout.String(), "relay "+c.name) {
			t.Errorf("help %s: %v\n%s", c.name, err, cout.String())
		}
	}
	if err := runTo([]string{"help", "show", "spool"}, &out); err == nil {
		t.Error("help with two commands: no error")
	}
}
