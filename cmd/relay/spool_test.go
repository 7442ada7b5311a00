package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// runSpoolArgs runs `relay spool args...` in process and returns what it
// printed.
func runSpoolArgs(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	old := stdout
	stdout = &out
	defer func() { stdout = old }()
	err := run(append([]string{"spool"}, args...))
	t.Logf("relay spool %s: err %v\n%s", strings.Join(args, " "), err, out.String())
	return out.String(), err
}

func TestSpoolUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", nil, "want a subcommand"},
		{"unknown subcommand", []string{"list"}, `unknown subcommand "list"`},
		{"unknown flag", []string{"ls", "-all"}, "flag provided but not defined: -all"},
		{"positional argument", []string{"replay", "now"}, `unexpected argument "now"`},
		{"replay flag on ls", []string{"ls", "-rejected"}, "flag provided but not defined: -rejected"},
	}
	for _, tt := range tests {
		_, err := runSpoolArgs(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "usage:") {
			t.Errorf("%s: %v; want an error saying %q with the usage", tt.name, err, tt.want)
		}
	}
	if out, err := runSpoolArgs(t, "help"); err != nil || !strings.Contains(out, "relay spool replay") {
		t.Errorf("help: %v %q", err, out)
	}
}

// TestSpoolLsReplay: files spooled while no ClickHouse was configured plus a
// corrupt one are listed, replayed into the ClickHouse of the config (the
// corrupt one rejected), and listed again.
func TestSpoolLsReplay(t *testing.T) {
	chURL := servicetest.ClickHouse(t)
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	db := "relay_spoolcmd_test_" + hex.EncodeToString(rb[:])
	t.Cleanup(func() { servicetest.Exec(t, chURL, "DROP DATABASE IF EXISTS "+db) })
	spool := t.TempDir()

	// Embedded mode: every block goes to a spool file.
	w, err := chlog.New(chlog.Options{SpoolDir: spool, BatchRows: 3, FlushInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		r := record.Acquire(1 << 10)
		_, _ = rand.Read(rb[:])
		copy(r.ID[:], fmt.Sprintf("%032x", i+1))
		r.Start = time.Now().Truncate(time.Second)
		r.Route, r.Method, r.Path, r.Status = "openai", "POST", "/v1/chat/completions", 200
		w.Write(r)
		record.Release(r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	bad := "00000000000000000001-4-k-" + strings.Repeat("a", 32) + "-" + strings.Repeat("b", 32) + ".native"
	if err := os.WriteFile(filepath.Join(spool, bad), []byte("\xde\xad\xbe\xef random bytes"), 0o644); err != nil {
		t.Fatal(err)
	}

	cfg := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf("routes:\n  - name: openai\n    path: /v1/chat/completions\n    upstream: https://api.openai.com\nstorage:\n  spool_dir: %s\n  clickhouse:\n    url: %s\n    database: %s\n", spool, chURL, db)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := "-env-file=" + filepath.Join(t.TempDir(), "none.env")

	out, err := runSpoolArgs(t, "ls", "-config", cfg, noEnv, "-verify")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"queued  " + bad, "will be rejected: not a Native block",
		strings.Repeat("0", 31) + "1", // the first request id of the first file
		" queued, 0 rejected",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ls output lacks %q", want)
		}
	}

	out, err = runSpoolArgs(t, "replay", "-config", cfg, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "rejected  "+bad) || !strings.Contains(out, " files inserted (7 rows), 1 rejected") {
		t.Errorf("replay output unexpected")
	}
	rows := servicetest.Query(t, chURL, db, "SELECT count() AS n FROM stream_logs")
	if n := fmt.Sprint(rows[0]["n"]); n != "7" {
		t.Errorf("%s rows in ClickHouse; want 7", n)
	}

	out, err = runSpoolArgs(t, "ls", "-config", cfg, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "rejected  "+bad) || !strings.Contains(out, ": 0 queued, 1 rejected") || !strings.Contains(out, "not a Native block") {
		t.Errorf("ls after replay unexpected")
	}

	out, err = runSpoolArgs(t, "replay", "--rejected", "-config", cfg, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "kept      "+bad) || !strings.Contains(out, "1 kept there") {
		t.Errorf("replay --rejected output unexpected")
	}
}

// TestSpoolLsReplayWAL: rows a relay with durability wal left in its WAL
// (a crash: the writer is abandoned) are listed by ls (state wal, with
// their rows) and sent by replay, as a relay's next start would send them;
// both said "0 queued" and "0 files inserted", the rows untouched.
func TestSpoolLsReplayWAL(t *testing.T) {
	chURL := servicetest.ClickHouse(t)
	var rb [6]byte
	_, _ = rand.Read(rb[:])
	db := "relay_spoolwal_test_" + hex.EncodeToString(rb[:])
	t.Cleanup(func() { servicetest.Exec(t, chURL, "DROP DATABASE IF EXISTS "+db) })
	spool := t.TempDir()
	crashed, err := chlog.New(chlog.Options{SpoolDir: spool, Durability: chlog.DurabilityWAL, FlushInterval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		r := record.Acquire(1 << 10)
		copy(r.ID[:], fmt.Sprintf("%032x", i+1))
		r.Start = time.Now().Truncate(time.Second)
		r.Route, r.Method, r.Path, r.Status = "openai", "POST", "/v1/chat/completions", 200
		if err := crashed.Write(r); err != nil {
			t.Fatal(err)
		}
		record.Release(r)
	}
	// crashed is never closed: its rows are in its WAL segment only.

	cfg := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf("routes:\n  - name: openai\n    path: /v1/chat/completions\n    upstream: https://api.openai.com\nstorage:\n  spool_dir: %s\n  clickhouse:\n    url: %s\n    database: %s\n", spool, chURL, db)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	noEnv := "-env-file=" + filepath.Join(t.TempDir(), "none.env")
	out, err := runSpoolArgs(t, "ls", "-config", cfg, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"wal    wal/", strings.Repeat("0", 31) + "1", strings.Repeat("0", 31) + "3", "1 WAL segment(s) with 3 row(s), not yet queued"} {
		if !strings.Contains(out, want) {
			t.Errorf("ls output lacks %q", want)
		}
	}
	out, err = runSpoolArgs(t, "replay", "-config", cfg, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "rows=3  from WAL segments into the queue") || !strings.Contains(out, " files inserted (3 rows)") {
		t.Errorf("replay output unexpected")
	}
	rows := servicetest.Query(t, chURL, db, "SELECT count() AS n FROM stream_logs")
	if n := fmt.Sprint(rows[0]["n"]); n != "3" {
		t.Errorf("%s rows in ClickHouse; want 3", n)
	}
	if out, err = runSpoolArgs(t, "ls", "-config", cfg, noEnv); err != nil || strings.Contains(out, "WAL segment") {
		t.Errorf("ls after replay: %v; want no WAL segment left", err)
	}
}

// TestSpoolReplayNeedsClickHouse: without a configured url there is
// nothing to replay to; the error says which key.
func TestSpoolReplayNeedsClickHouse(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf("routes:\n  - name: openai\n    path: /v1/chat/completions\n    upstream: https://api.openai.com\nstorage:\n  spool_dir: %s\n", t.TempDir())
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := runSpoolArgs(t, "replay", "-config", cfg, "-env-file=/nonexistent")
	if err == nil || !strings.Contains(err.Error(), "storage.clickhouse.url") {
		t.Errorf("%v; want an error naming storage.clickhouse.url", err)
	}
}

// spoolConfig writes a configuration whose spool_dir is spool, with a
// ClickHouse url nothing listens on, and returns its path.
func spoolConfig(t *testing.T, spool string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	yaml := fmt.Sprintf("routes:\n  - name: openai\n    path: /v1/chat/completions\n    upstream: https://api.openai.com\nstorage:\n  spool_dir: %s\n  clickhouse:\n    url: http://127.0.0.1:1\n", spool)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSpoolMissingDir: relay spool ls and replay on a spool_dir that does
// not exist (nothing spooled yet) succeed as on an empty one, say so in
// one line on stderr and create nothing (replay asks no ClickHouse); a
// spool_dir that is a file, or lies under one, is an error naming it.
func TestSpoolMissingDir(t *testing.T) {
	var notes bytes.Buffer
	old := spoolNotes
	spoolNotes = &notes
	defer func() { spoolNotes = old }()
	noEnv := "-env-file=" + filepath.Join(t.TempDir(), "none.env")

	spool := filepath.Join(t.TempDir(), "spool")
	cfg := spoolConfig(t, spool)
	for _, tt := range []struct {
		args       []string
		out, notes string
	}{
		{[]string{"ls"}, spool + ": 0 queued, 0 rejected", "relay spool ls: spool_dir " + spool + " does not exist: nothing spooled, listed as empty\n"},
		{[]string{"ls", "-verify"}, spool + ": 0 queued, 0 rejected", "relay spool ls: spool_dir " + spool + " does not exist: nothing spooled, listed as empty\n"},
		{[]string{"replay"}, "", "relay spool replay: spool_dir " + spool + " does not exist: nothing to replay\n"},
		{[]string{"replay", "-rejected"}, "", "relay spool replay: spool_dir " + spool + " does not exist: nothing to replay\n"},
	} {
		notes.Reset()
		out, err := runSpoolArgs(t, append(tt.args, "-config", cfg, noEnv)...)
		if err != nil || exitCode(err) != 0 {
			t.Errorf("%v: %v (exit %d), want success", tt.args, err, exitCode(err))
		}
		if !strings.Contains(out, tt.out) {
			t.Errorf("%v: output %q, want it to say %q", tt.args, out, tt.out)
		}
		if notes.String() != tt.notes {
			t.Errorf("%v: stderr %q, want %q", tt.args, notes.String(), tt.notes)
		}
		if _, err := os.Stat(spool); !os.IsNotExist(err) {
			t.Fatalf("%v: the spool_dir was created (%v)", tt.args, err)
		}
	}

	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, filepath.Join(file, "sub")} {
		cfg := spoolConfig(t, path)
		for _, sub := range []string{"ls", "replay"} {
			notes.Reset()
			_, err := runSpoolArgs(t, sub, "-config", cfg, noEnv)
			if err == nil || exitCode(err) == 0 || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a directory") {
				t.Errorf("%s on %s: %v (exit %d), want a failure naming the path", sub, path, err, exitCode(err))
			}
			if notes.Len() > 0 {
				t.Errorf("%s on %s: stderr %q, want nothing", sub, path, notes.String())
			}
		}
	}
}

// TestSpoolLsEscapesDamage: a damaged spool file whose bytes make a
// column name of terminal escapes (a window title, colours) is listed
// with them escaped, as relay show escapes stored bytes; the reason kept
// beside a rejected file is printed escaped again by every later ls.
func TestSpoolLsEscapesDamage(t *testing.T) {
	spool := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	name := []byte("\x1b]2;TITLE\x07\x1b[31mRED\x1b[0m\x9b")
	data := append(append([]byte{1, 1, byte(len(name))}, name...), 3, 'F', 'o', 'o')
	id := "01a245f2a236855def9d118167de9b3c"
	if err := os.WriteFile(filepath.Join(spool, "01796469857073799999-1-k-"+id+"-"+id+".native"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := spoolConfig(t, spool)
	noEnv := "-env-file=" + filepath.Join(t.TempDir(), "none.env")
	out, _ := runSpoolArgs(t, "ls", "-verify", "-config", cfg, noEnv)
	if strings.ContainsAny(out, "\x1b\x07") || strings.Contains(out, "\u009b") || !strings.Contains(out, `\x1b]2;TITLE`) {
		t.Fatalf("spool ls -verify printed raw control bytes, or not the column name escaped: %q", out)
	}
}
