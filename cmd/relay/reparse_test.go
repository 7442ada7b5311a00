package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// responsesRow is a Responses API stream stored by a relay whose scanner
// did not know response.output_text.delta: ttft_ms is the done event's.
func responsesRow() *record.Record {
	r := record.Acquire(1 << 20)
	r.ID = showID()
	r.Start = time.Now().Truncate(time.Second)
	r.Route, r.Kind, r.Capture = "openai", record.KindSSE, true
	r.Method, r.Path, r.Status = "POST", "/v1/responses", 200
	r.SetRequestBody([]byte(`{"model":"gpt-4.1","stream":true,"input":"Hi"}`))
	r.Model = "gpt-4.1"
	r.AddChunk([]byte("event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[],\"usage\":null}}\n\n"), 150*time.Millisecond)
	r.AddChunk([]byte("event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\",\"delta\":\"Hello\"}\n\n"), 400*time.Millisecond)
	r.AddChunk([]byte("event: response.output_text.done\ndata: {\"type\":\"response.output_text.done\",\"item_id\":\"msg_1\",\"text\":\"Hello\"}\n\n"+
		"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"usage\":{\"input_tokens\":8,\"output_tokens\":2,\"total_tokens\":10}}}\n\n"), 804*time.Millisecond)
	r.TTFT, r.TokensIn, r.TokensOut = 804*time.Millisecond, -1, -1
	return r
}

func reparse(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runTo(append([]string{"reparse"}, args...), &out)
	if testing.Verbose() {
		t.Logf("relay reparse %s:\n%s", strings.Join(args, " "), out.String())
	}
	return out.String(), err
}

func TestReparseCommand(t *testing.T) {
	chURL, db := showDB(t)
	spool := t.TempDir()
	w := newWriter(t, chlog.Options{URL: chURL, Database: db, SpoolDir: spool})
	rec := responsesRow()
	id := rec.IDString()
	w.Write(rec)
	if err := w.Close(ctx30(t)); err != nil {
		t.Fatal(err)
	}
	cfg := writeConfig(t, fmt.Sprintf("  spool_dir: %s\n  clickhouse:\n    url: %s\n    database: %s\n", spool, chURL, db))
	stored := func() string {
		row := servicetest.Query(t, chURL, db, "SELECT ttft_ms, tokens_in, tokens_out FROM stream_logs WHERE request_id = '"+id+"'")[0]
		return fmt.Sprint(row["ttft_ms"], " ", row["tokens_in"], " ", row["tokens_out"])
	}
	if got := stored(); got != "804 <nil> <nil>" {
		t.Fatalf("stored %q", got)
	}

	out, err := reparse(t, "-config", cfg, "--since", "1h", "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "rows read: 1\n", "rows would change: 1\n", "ttft_ms    1\n", "tokens_in  1\n", "tokens_out 1\n", "model      0\n", "dry run: nothing written")
	if got := stored(); got != "804 <nil> <nil>" {
		t.Fatalf("dry run wrote: %q", got)
	}

	out, err = reparse(t, "--route", "openai", "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "rows changed: 1\n", "ttft_ms    1\n", "mutations: 1 (finished)")
	if got := stored(); got != "400 8 2" {
		t.Fatalf("after reparse: %q, want 400 8 2", got)
	}

	for _, tt := range []struct{ args, want string }{
		{"--since yesterday", `since="yesterday"`},
		{"--route nosuch", `route="nosuch": not in`},
		{"extra", `unexpected argument "extra"`},
	} {
		if _, err := reparse(t, append([]string{"-config", cfg}, strings.Fields(tt.args)...)...); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("reparse %s: %v, want an error with %q", tt.args, err, tt.want)
		}
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		give string
		want time.Time
	}{
		{"", time.Time{}},
		{"24h", now.Add(-24 * time.Hour)},
		{"2026-11-29", time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)},
		{"2026-11-29T08:30:00Z", time.Date(2026, 11, 29, 8, 30, 0, 0, time.UTC)},
		{"2026-11-29T08:30:00+02:00", time.Date(2026, 11, 29, 6, 30, 0, 0, time.UTC)},
	} {
		got, err := parseSince(tt.give, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", tt.give, got, err, tt.want)
		}
	}
	if _, err := parseSince("-1h", now); err == nil {
		t.Error("negative duration accepted")
	}
}

// TestReparseClickHouseDown: a run that could read nothing prints no
// summary (it would look like a clean run of zero rows), only the error.
func TestReparseClickHouseDown(t *testing.T) {
	closed := closedClickHouse(t)
	cfg := writeConfig(t, "  spool_dir: "+t.TempDir()+"\n  clickhouse:\n    url: "+closed+"\n")
	for _, args := range [][]string{{"--dry-run"}, nil} {
		out, err := reparse(t, append([]string{"-config", cfg}, args...)...)
		if out != "" {
			t.Errorf("reparse %v printed a summary:\n%s", args, out)
		}
		if err == nil || !strings.Contains(err.Error(), "no rows read") || !strings.Contains(err.Error(), closed) ||
			!strings.Contains(err.Error(), "connection refused") || exitCode(err) != exitFailed {
			t.Errorf("reparse %v: %v (exit %d); want the cause and exit %d", args, err, exitCode(err), exitFailed)
		}
	}
}

// TestPrintReparseStopped: counts printed before an error say they are partial.
func TestPrintReparseStopped(t *testing.T) {
	res := &chlog.ReparseResult{Rows: 3, Changed: 1, TTFT: 1, Mutations: 1}
	for _, tt := range []struct {
		dryRun bool
		want   string
	}{
		{true, "stopped early by the error below: partial counts; dry run: nothing written\n"},
		{false, "stopped early by the error below: partial counts; mutations sent: 1\n"},
	} {
		var b bytes.Buffer
		printReparse(&b, res, tt.dryRun, true)
		if !strings.Contains(b.String(), "rows read: 3\n") || !strings.HasSuffix(b.String(), tt.want) || strings.Contains(b.String(), "(finished)") {
			t.Errorf("dry run %v:\n%s", tt.dryRun, b.String())
		}
	}
}

// TestPrintReparseSkipped: the summary's skipped rows are said to be all
// the rows reparse leaves: a ws route's, a route's no longer in the
// config, and those of requests no route matched (route "").
func TestPrintReparseSkipped(t *testing.T) {
	var b bytes.Buffer
	printReparse(&b, &chlog.ReparseResult{Rows: 10, Skipped: 4}, true, false)
	want := "rows read: 10 (4 skipped: of ws routes, of routes not in the config, or of requests no route matched)\n"
	if !strings.HasPrefix(b.String(), want) {
		t.Errorf("summary:\n%s\nwant it to begin %q", b.String(), want)
	}
}

// TestReparseSkipsRowsOfNoStreamRoute: the rows reparse skips, and the
// summary counts, are those of a ws route, of a route no longer in the
// config and of requests no route matched (route ""); a configured sse
// route's row is read and reparsed.
func TestReparseSkipsRowsOfNoStreamRoute(t *testing.T) {
	chURL, db := showDB(t)
	spool := t.TempDir()
	w := newWriter(t, chlog.Options{URL: chURL, Database: db, SpoolDir: spool})
	for _, route := range []string{"openai", "voice", "gone", ""} {
		rec := responsesRow()
		rec.Route = route
		if route == "voice" {
			rec.Kind = record.KindWS
		}
		w.Write(rec)
	}
	if err := w.Close(ctx30(t)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf(`routes:
  - name: openai
    path: /v1/chat/completions
    upstream: https://api.openai.com
  - name: voice
    path: /v1/realtime
    upstream: wss://api.openai.com
    kind: ws
storage:
  spool_dir: %s
  clickhouse:
    url: %s
    database: %s
`, spool, chURL, db)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := reparse(t, "-config", path, "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, out, "rows read: 4 (3 skipped: of ws routes, of routes not in the config, or of requests no route matched)\n",
		"rows would change: 1\n")
}
