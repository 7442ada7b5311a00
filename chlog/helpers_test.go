package chlog

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// testDB creates a database unique to the test on the real server and drops
// it at the end.
func testDB(t testing.TB) (chURL, db string) {
	t.Helper()
	chURL = servicetest.ClickHouse(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	db = "relay_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { _, _ = chQuery(chURL, "", "DROP DATABASE IF EXISTS "+db) })
	return chURL, db
}

// chQuery runs sql with the given default database and returns the body.
func chQuery(chURL, db, sql string) (string, error) {
	q := url.Values{}
	if db != "" {
		q.Set("database", db)
	}
	q.Set("output_format_json_quote_64bit_integers", "0")
	resp, err := servicetest.HTTP.Post(chURL+"/?"+q.Encode(), "text/plain", strings.NewReader(sql))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("http %d: %s", resp.StatusCode, body)
	}
	return string(body), nil
}

func mustQuery(t testing.TB, chURL, db, sql string) string {
	t.Helper()
	s, err := chQuery(chURL, db, sql)
	if err != nil {
		t.Fatalf("query %q: %v", sql, err)
	}
	return strings.TrimSpace(s)
}

// rowsOf decodes JSONEachRow output.
func rowsOf(t testing.TB, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	for dec.More() {
		m := map[string]any{}
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("decode %q: %v", s, err)
		}
		out = append(out, m)
	}
	return out
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

func newID(i int) [record.IDLen]byte {
	var id [record.IDLen]byte
	var b [16]byte
	_, _ = rand.Read(b[:])
	hex.Encode(id[:], b[:])
	copy(id[:8], fmt.Sprintf("%08x", i))
	return id
}

// sseRecord is a typical full-capture OpenAI stream of n chunks.
func sseRecord(i, n int) *record.Record {
	r := record.Acquire(4 << 20)
	r.ID = newID(i)
	r.Start = time.Now().Add(-2 * time.Second).Truncate(time.Second)
	r.Route, r.Kind, r.Capture = "openai", record.KindSSE, true
	r.Tenant, r.KeyID, r.Instance = "tenant-a", "k1a2b3", "relay-1"
	r.Method, r.Path, r.Upstream = "POST", "/v1/chat/completions", "https://api.openai.com"
	r.Status = 200
	r.TTFB, r.TTFT, r.Duration = 120*time.Millisecond, 180*time.Millisecond, 2*time.Second
	r.Model, r.TokensIn, r.TokensOut = "gpt-4o", 12, int64(n)
	r.ClientIP, r.UserAgent = "10.0.0.7", "curl/8.5"
	r.RequestHeaders = append(r.RequestHeaders, `{"content-type":"application/json","authorization":"[redacted]"}`...)
	r.ResponseHeaders = append(r.ResponseHeaders, `{"content-type":"text/event-stream"}`...)
	r.SetRequestBody([]byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello there, how are you?"}]}`))
	r.BytesIn = int64(len(r.RequestBody))
	var chunk bytes.Buffer
	for c := range n {
		chunk.Reset()
		fmt.Fprintf(&chunk, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tok%d \"}}]}\n\n", c)
		r.AddChunk(chunk.Bytes(), time.Duration(180+20*c)*time.Millisecond)
	}
	return r
}

func flush(t testing.TB, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func closeWriter(t testing.TB, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// spooledRowList decodes the rows of every spool file in dir, oldest file
// first; every file must decode whole and hold the rows its name says.
func spooledRowList(t testing.TB, dir string) []Row {
	t.Helper()
	var all []Row
	for _, name := range spoolNames(t, dir) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := DecodeRows(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f := parseMust(t, name); f.rows != len(rows) {
			t.Fatalf("%s: name says %d rows, file holds %d", name, f.rows, len(rows))
		}
		all = append(all, rows...)
	}
	return all
}

// writeSSE writes n records of two chunks (sseRecord) to w, errors
// ignored, and returns their ids.
func writeSSE(w *Writer, n int) map[string]bool {
	ids := map[string]bool{}
	for i := range n {
		r := sseRecord(i, 2)
		ids[string(r.ID[:])] = true
		_ = w.Write(r)
	}
	return ids
}
