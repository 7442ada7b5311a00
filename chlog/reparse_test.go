package chlog

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// recordedRecord is a stored request whose response is a recorded stream
// of usage/testdata ("#at MS" lines start each relayed read), with the
// values an older relay stored for it.
func recordedRecord(t *testing.T, i int, file, route, path string, capture bool, start time.Time) *record.Record {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "usage", "testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	r := record.Acquire(4 << 20)
	r.ID = newID(i)
	r.Start = start
	r.Route, r.Kind, r.Capture = route, record.KindSSE, capture
	r.Method, r.Path, r.Status = "POST", path, 200
	r.SetRequestBody([]byte(`{"stream":true,"input":"hi"}`))
	var chunk []byte
	at := -1
	add := func() {
		if at >= 0 {
			r.AddChunk(chunk, time.Duration(at)*time.Millisecond)
		}
	}
	for len(b) > 0 {
		line := b
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			line, b = b[:j+1], b[j+1:]
		} else {
			b = nil
		}
		if ms, ok := bytes.CutPrefix(line, []byte("#at ")); ok {
			add()
			at, _ = strconv.Atoi(string(bytes.TrimSpace(ms)))
			chunk = nil
			continue
		}
		chunk = append(chunk, line...)
	}
	add()
	return r
}

type storedValues struct{ ttft, in, out, model string }

func storedRow(t *testing.T, chURL, db string, id [record.IDLen]byte) storedValues {
	t.Helper()
	rows := rowsOf(t, mustQuery(t, chURL, db, "SELECT ttft_ms, tokens_in, tokens_out, model FROM stream_logs WHERE request_id = '"+string(id[:])+"' FORMAT JSONEachRow"))
	if len(rows) != 1 {
		t.Fatalf("%d rows for %s", len(rows), id)
	}
	s := func(v any) string {
		if v == nil {
			return "NULL"
		}
		return fmt.Sprint(v)
	}
	return storedValues{s(rows[0]["ttft_ms"]), s(rows[0]["tokens_in"]), s(rows[0]["tokens_out"]), s(rows[0]["model"])}
}

// TestReparse stores rows as an older relay did (the Responses API's TTFT
// stopped at response.output_text.done, Gemini without tokens or model),
// then repairs them from their stored bytes: a dry run changes nothing, a
// run writes the values the live path computes now, a second run finds
// nothing to change. Rows that do not hold what a value is computed from
// keep it.
func TestReparse(t *testing.T) {
	chURL, db := testDB(t)
	w, err := New(Options{URL: chURL, Database: db, SpoolDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	old := now.Add(-72 * time.Hour)

	resp := recordedRecord(t, 1, "responses.sse", "openai", "/v1/responses", true, now)
	resp.TTFT, resp.TokensIn, resp.TokensOut = 804*time.Millisecond, 21, 9 // the old scanner's TTFT
	gem := recordedRecord(t, 2, "gemini.sse", "gemini", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", true, now)
	gem.TTFT, gem.TokensIn, gem.TokensOut = 520*time.Millisecond, -1, -1 // usageMetadata not read
	gem.SetRequestBody([]byte(`{"contents":[{"parts":[{"text":"Tell a story"}]}]}`))
	ant := recordedRecord(t, 3, "anthropic.sse", "anthropic", "/v1/messages", true, now)
	ant.TTFT, ant.TokensIn, ant.TokensOut, ant.Model = 410*time.Millisecond, 472, 12, "claude" // right already
	ant.SetRequestBody([]byte(`{"model":"claude","stream":true}`))
	meta := recordedRecord(t, 4, "responses.sse", "openai", "/v1/responses", false, now)
	meta.TTFT, meta.TokensIn, meta.TokensOut = 804*time.Millisecond, 21, 9 // no bytes stored: left alone
	gone := recordedRecord(t, 5, "gemini.sse", "removed-route", "/v1beta/models/g:streamGenerateContent", true, now)
	gone.TokensIn, gone.TokensOut = -1, -1 // its route's kind is unknown: skipped
	oldResp := recordedRecord(t, 6, "responses.sse", "openai", "/v1/responses", true, old)
	oldResp.TTFT, oldResp.TokensIn, oldResp.TokensOut = 804*time.Millisecond, 21, 9
	gemTool := recordedRecord(t, 7, "gemini_tool.sse", "gemini", "/v1beta/models/gemini-2.0-flash-001:streamGenerateContent", true, now)
	gemTool.TTFT, gemTool.TokensIn, gemTool.TokensOut, gemTool.Model = 640*time.Millisecond, -1, -1, "gemini-2.0-flash-001"
	tts := record.Acquire(1 << 20)
	tts.ID, tts.Start, tts.Route, tts.Kind, tts.Capture = newID(8), now, "tts", record.KindRaw, true
	tts.Method, tts.Path, tts.Status, tts.TTFT = "POST", "/v1/audio/speech", 200, record.None
	tts.AddChunk([]byte("RIFF\x00\x00\"text\":\"x\""), 75*time.Millisecond)
	tts.AddChunk([]byte("\x01\x02"), 90*time.Millisecond)

	recs := []*record.Record{resp, gem, ant, meta, gone, oldResp, gemTool, tts}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	closeWriter(t, w)

	before := map[int]storedValues{}
	for i, r := range recs {
		before[i] = storedRow(t, chURL, db, r.ID)
	}
	if before[0].ttft != "804" || before[1].in != "NULL" {
		t.Fatalf("rows not stored as the old relay did: %+v %+v", before[0], before[1])
	}

	opts := ReparseOptions{
		URLs: []string{chURL}, Database: db,
		Since:   now.Add(-time.Hour),
		Kinds:   map[string]record.Kind{"openai": record.KindSSE, "gemini": record.KindSSE, "anthropic": record.KindSSE, "tts": record.KindRaw},
		KeyRows: 3, BatchRows: 2, MutationRows: 2, // several pages, batches and mutations
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	dry := opts
	dry.DryRun = true
	res, err := Reparse(ctx, dry)
	if err != nil {
		t.Fatal(err)
	}
	want := ReparseResult{Rows: 7, Skipped: 1, Changed: 4, TTFT: 3, TokensIn: 2, TokensOut: 2, Model: 1}
	if *res != want {
		t.Fatalf("dry run: %+v\nwant       %+v", *res, want)
	}
	for i, r := range recs {
		if got := storedRow(t, chURL, db, r.ID); got != before[i] {
			t.Fatalf("dry run changed row %d: %+v -> %+v", i, before[i], got)
		}
	}

	res, err = Reparse(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	want.Mutations = 2
	if *res != want {
		t.Fatalf("run: %+v\nwant %+v", *res, want)
	}
	after := func(i int) storedValues { return storedRow(t, chURL, db, recs[i].ID) }
	checks := []struct {
		i    int
		want storedValues
	}{
		{0, storedValues{"400", "21", "9", ""}},                 // Responses: first output_text.delta
		{1, storedValues{"520", "9", "19", "gemini-2.0-flash"}}, // Gemini: usageMetadata, model from the path
		{2, storedValues{"410", "472", "12", "claude"}},         // unchanged
		{3, before[3]}, // meta: nothing to recompute from
		{4, before[4]}, // unknown route
		{5, before[5]}, // before --since
		{6, storedValues{"700", "86", "13", "gemini-2.0-flash-001"}}, // an empty first text is no token
		{7, storedValues{"75", "NULL", "NULL", ""}},                  // raw: the first read
	}
	for _, c := range checks {
		if got := after(c.i); got != c.want {
			t.Errorf("row %d: %+v, want %+v", c.i, got, c.want)
		}
	}
	if n := mustQuery(t, chURL, "", "SELECT count() FROM system.mutations WHERE database = '"+db+"' AND is_done = 0"); n != "0" {
		t.Errorf("%s mutations unfinished after Reparse returned", n)
	}

	res, err = Reparse(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed != 0 || res.Mutations != 0 || res.Rows != 7 {
		t.Errorf("second run: %+v", *res)
	}

	// --route and no --since: the old row of that route is repaired too.
	one := opts
	one.Route, one.Since = "openai", time.Time{}
	res, err = Reparse(ctx, one)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 3 || res.Changed != 1 || res.TTFT != 1 || after(5).ttft != "400" {
		t.Errorf("route openai, all times: %+v, old row %+v", *res, after(5))
	}
}

// TestDerive: which values a stored row can give.
func TestDerive(t *testing.T) {
	u32 := func(v uint32) *uint32 { return &v }
	row := Row{Path: "/v1/responses", Status: 200, ChunkOffsetsMS: []uint32{10, 20},
		Chunks: [][]byte{[]byte(`data: {"type":"response.created","response":{"usage":null}}` + "\n\n"), []byte(`data: {"type":"response.output_text.delta","delta":"x"}` + "\n\n")}}
	d := Derive(&row, record.KindSSE)
	if !d.TTFTKnown || d.TTFTms == nil || *d.TTFTms != 20 || !d.TokensKnown || d.TokensIn != nil {
		t.Errorf("captured: %+v", d)
	}
	read := row
	read.Method = "GET" // a response fetched again: its tokens are the live path's (handlers' retrievals)
	if d := Derive(&read, record.KindSSE); !d.TTFTKnown || d.TokensKnown {
		t.Errorf("a read: %+v", d)
	}
	trunc := row
	trunc.Chunks, trunc.ChunkOffsetsMS, trunc.Truncated = trunc.Chunks[:1], trunc.ChunkOffsetsMS[:1], true
	if d := Derive(&trunc, record.KindSSE); d.TTFTKnown || d.TokensKnown {
		t.Errorf("truncated before the token: %+v", d)
	}
	meta := row
	meta.Chunks, meta.BytesIn = nil, 40 // a request body sent, not stored
	if d := Derive(&meta, record.KindSSE); d.TTFTKnown || d.TokensKnown || d.ModelKnown {
		t.Errorf("meta: %+v", d)
	}
	failed := meta
	failed.Status, failed.TTFTms = 502, u32(5)
	if d := Derive(&failed, record.KindSSE); !d.TTFTKnown || d.TTFTms != nil {
		t.Errorf("error status: %+v", d)
	}
	if d := Derive(&meta, record.KindRaw); !d.TTFTKnown || d.TTFTms == nil || *d.TTFTms != 10 || d.TokensKnown {
		t.Errorf("raw meta: %+v", d)
	}
	audio := Row{Path: "/v1/audio/speech", Status: 200, ChunkOffsetsMS: []uint32{15, 30},
		ResponseHeaders: []byte(`{"content-type":"audio/mpeg"}`), Chunks: [][]byte{{0xff, 0xfb}, {0x90}}}
	if d := Derive(&audio, record.KindSSE); !d.TTFTKnown || d.TTFTms == nil || *d.TTFTms != 15 || d.StreamError {
		t.Errorf("audio on an sse route (its first byte, as live): %+v", d)
	}
	file := audio
	file.Method = "GET" // a stored file read back: no first token, binary or not
	if d := Derive(&file, record.KindSSE); !d.TTFTKnown || d.TTFTms != nil {
		t.Errorf("a binary file read back: %+v", d)
	}
	starved := meta
	starved.ChunkOffsetsMS, starved.Truncated, starved.TTFTms = nil, true, u32(7)
	if d := Derive(&starved, record.KindRaw); d.TTFTKnown {
		t.Errorf("raw without chunk times (storage budget): %+v", d)
	}
	empty := Row{Path: "/v1/responses", Status: 200}
	if d := Derive(&empty, record.KindSSE); !d.TTFTKnown || d.TTFTms != nil || d.TokensKnown {
		t.Errorf("no response bytes at all: %+v", d)
	}
}

// TestDeriveModel: a row that holds its whole request body, or whose
// request had none (bytes_in 0), gives the model the live path stores for
// it, "" included: an empty body's is the path's, as a body's that names
// none. A body not stored, or cut, gives only a model found.
func TestDeriveModel(t *testing.T) {
	const gemini = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
	body := func(s string) ([]byte, uint64) { return []byte(s), uint64(len(s)) }
	for _, tt := range []struct {
		name      string
		path      string
		body      string
		bytesIn   uint64 // of the request; len(body) when 0 and body is set
		model     string // stored
		want      string
		wantKnown bool
	}{
		{"empty body, stale model", "/v1/chat/completions", "", 0, "gpt-stale", "", true},
		{"empty body, none stored", "/v1/chat/completions", "", 0, "", "", true},
		{"empty body, gemini path", gemini, "", 0, "gpt-stale", "gemini-2.0-flash", true},
		{"body without model", "/v1/chat/completions", `{"messages":[]}`, 0, "gpt-stale", "", true},
		{"body without model, gemini path", gemini, `{"contents":[]}`, 0, "gpt-stale", "gemini-2.0-flash", true},
		{"body with model", "/v1/chat/completions", `{"model":"gpt-4o"}`, 0, "", "gpt-4o", true},
		{"body not stored", "/v1/chat/completions", "", 40, "gpt-4o", "", false},
		{"body not stored, none stored", gemini, "", 40, "", "gemini-2.0-flash", true},
		{"body cut before the model", "/v1/chat/completions", `{"messages":[`, 4000, "gpt-4o", "", false},
		{"body cut after the model", "/v1/chat/completions", `{"model":"gpt-4o","messages":[`, 4000, "", "gpt-4o", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			row := Row{Path: tt.path, Status: 200, Model: tt.model, BytesIn: tt.bytesIn}
			if tt.body != "" {
				var n uint64
				row.RequestBody, n = body(tt.body)
				if row.BytesIn == 0 {
					row.BytesIn = n
				}
			}
			if d := Derive(&row, record.KindSSE); d.Model != tt.want || d.ModelKnown != tt.wantKnown {
				t.Errorf("model %q known %v, want %q known %v", d.Model, d.ModelKnown, tt.want, tt.wantKnown)
			}
		})
	}
}

// TestReparseModel stores rows whose model an older relay got wrong, or
// that hold nothing to tell, and repairs them against ClickHouse: a row
// whose request had no body gets the model the live path stores for an
// empty body (the path's, "" on most), as a row whose body names none
// does; rows whose body was not stored, or was cut before its model, keep
// theirs.
func TestReparseModel(t *testing.T) {
	chURL, db := testDB(t)
	w, err := New(Options{URL: chURL, Database: db, SpoolDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	const gemini = "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
	rows := []struct {
		path, body   string
		bytesIn      int64 // len(body) when 0
		capture      bool
		stored, want string
	}{
		{"/v1/chat/completions", "", 0, true, "gpt-stale", ""},                       // no body: no model
		{gemini, "", 0, true, "gpt-stale", "gemini-2.0-flash"},                       // no body: the path's
		{"/v1/chat/completions", "", 0, false, "gpt-stale", ""},                      // meta, no body: as full
		{"/v1/chat/completions", `{"messages":[]}`, 0, true, "gpt-stale", ""},        // a body that names none
		{"/v1/chat/completions", "", 120, true, "gpt-4o", "gpt-4o"},                  // body not stored (budget)
		{"/v1/chat/completions", `{"model":"gpt-4o"}`, 0, false, "gpt-4o", "gpt-4o"}, // meta: not stored
		{"/v1/chat/completions", `{"messages":[`, 5000, true, "gpt-4o", "gpt-4o"},    // cut before the model
		{"/v1/chat/completions", "", 0, true, "", ""},                                // right already
	}
	var ids [][record.IDLen]byte
	for i, rw := range rows {
		r := record.Acquire(1 << 20)
		r.ID, r.Start = newID(200+i), now
		r.Route, r.Kind, r.Capture = "openai", record.KindSSE, rw.capture
		r.Method, r.Path, r.Status, r.Model = "POST", rw.path, 200, rw.stored
		r.TTFT, r.TokensIn, r.TokensOut = record.None, -1, -1 // no response bytes: nothing else to change
		if rw.body != "" {
			r.SetRequestBody([]byte(rw.body))
		}
		r.BytesIn = rw.bytesIn
		if r.BytesIn == 0 {
			r.BytesIn = int64(len(rw.body))
		}
		ids = append(ids, r.ID)
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	closeWriter(t, w)
	for i, rw := range rows {
		if got := storedRow(t, chURL, db, ids[i]); got.model != rw.stored || got.ttft != "NULL" {
			t.Fatalf("row %d stored as %+v, want model %q and no TTFT", i, got, rw.stored)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := ReparseOptions{URLs: []string{chURL}, Database: db, Kinds: map[string]record.Kind{"openai": record.KindSSE}}
	res, err := Reparse(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ReparseResult{Rows: len(rows), Changed: 4, Model: 4, Mutations: 1}); *res != want {
		t.Errorf("run: %+v\nwant %+v", *res, want)
	}
	for i, rw := range rows {
		if got := storedRow(t, chURL, db, ids[i]); got.model != rw.want {
			t.Errorf("row %d (%s, body %q, bytes_in %d): model %q, want %q", i, rw.path, rw.body, rw.bytesIn, got.model, rw.want)
		}
	}
	if res, err := Reparse(ctx, opts); err != nil || res.Changed != 0 {
		t.Errorf("second run: %+v (%v)", res, err)
	}
}

// TestReparseCluster: on a cluster the rows are read through the
// Distributed table and the mutations go to the replicated local table ON
// CLUSTER; every replica of both shards ends with the repaired values.
func TestReparseCluster(t *testing.T) {
	c, db := clusterDB(t)
	w := newWriter(t, clusterOptions(t, c, db))
	now := time.Now().Truncate(time.Second)
	var ids []string
	for i := range 12 {
		r := recordedRecord(t, 100+i, "responses.sse", "openai", "/v1/responses", true, now)
		r.TTFT, r.TokensIn, r.TokensOut = 804*time.Millisecond, -1, -1
		ids = append(ids, string(r.ID[:]))
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, w)
	closeWriter(t, w)
	if s1, s2 := shardTotals(t, c, db); s1+s2 != 12 || s1 == 0 || s2 == 0 {
		t.Fatalf("shards hold %d + %d rows", s1, s2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Reparse(ctx, ReparseOptions{URLs: c.URLs, Cluster: c.Name, Database: db,
		Kinds: map[string]record.Kind{"openai": record.KindSSE}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 12 || res.Changed != 12 || res.TTFT != 12 || res.TokensIn != 12 || res.Mutations != 1 {
		t.Fatalf("reparse: %+v", *res)
	}
	for i, u := range c.URLs {
		got := mustQuery(t, u, db, "SELECT count() FROM stream_logs_local WHERE ttft_ms = 400 AND tokens_in = 21 AND tokens_out = 9")
		all := mustQuery(t, u, db, "SELECT count() FROM stream_logs_local")
		if got != all || all == "0" {
			t.Errorf("node %d: %s of %s local rows repaired", i, got, all)
		}
	}
	if got := mustQuery(t, c.URLs[0], db, "SELECT count() FROM stream_logs WHERE ttft_ms = 400"); got != "12" {
		t.Errorf("through the Distributed table: %s rows repaired, want 12", got)
	}
}

// TestReparseClusterManyRows: 1,600 rows each with three columns to change
// make ON CLUSTER statements no larger than the nodes' own max_query_size
// (256 KiB): several mutations, every row repaired on every replica. One
// statement of 336 KB was refused on the other nodes ("Max query size
// exceeded") at every run.
func TestReparseClusterManyRows(t *testing.T) {
	c, db := clusterDB(t)
	w := newWriter(t, clusterOptions(t, c, db))
	now := time.Now().Truncate(time.Second)
	const rows = 1600
	for i := range rows {
		r := recordedRecord(t, 1000+i, "responses.sse", "openai", "/v1/responses", true, now)
		r.TTFT, r.TokensIn, r.TokensOut = 804*time.Millisecond, -1, -1
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, w, 90*time.Second) // blocks a busy cluster did not take at once are replayed
	c.SyncReplicas(30 * time.Second)
	// Every row readable through the Distributed table (one replica a
	// shard, which may still be fetching).
	waitFor(t, "every row through the Distributed table", 60*time.Second, func() bool {
		return mustQuery(t, c.URLs[0], db, "SELECT count() FROM stream_logs") == strconv.Itoa(rows)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Reparse(ctx, ReparseOptions{URLs: c.URLs, Cluster: c.Name, Database: db,
		Kinds: map[string]record.Kind{"openai": record.KindSSE}})
	if err != nil {
		t.Fatalf("%v (%+v)", err, res)
	}
	if res.Changed != rows || res.Mutations < 2 {
		t.Fatalf("reparse: %+v; want %d rows changed in several mutations", *res, rows)
	}
	c.SyncReplicas(30 * time.Second)
	for i, u := range c.URLs {
		got := mustQuery(t, u, db, "SELECT count() FROM stream_logs_local WHERE ttft_ms = 400 AND tokens_in = 21 AND tokens_out = 9")
		all := mustQuery(t, u, db, "SELECT count() FROM stream_logs_local")
		if got != all || all == "0" {
			t.Errorf("node %d: %s of %s local rows repaired", i, got, all)
		}
	}
}

// TestReparseStreamError: rows stored before the relay looked for errors
// inside a 200 stream get error_type upstream_stream_error from their
// stored chunks (the event cut between two reads included), over none or
// the cut that followed it; a stream whose content merely says "error", a
// row with no bytes stored and an error status keep theirs.
func TestReparseStreamError(t *testing.T) {
	chURL, db := testDB(t)
	w, err := New(Options{URL: chURL, Database: db, SpoolDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	mk := func(i int, path string, capture bool, status int, errType string, chunks ...string) *record.Record {
		r := record.Acquire(1 << 20)
		r.ID, r.Start, r.Route, r.Kind, r.Capture = newID(i), now, "llm", record.KindSSE, capture
		r.Method, r.Path, r.Status, r.ErrorType = "POST", path, status, errType
		r.SetRequestBody([]byte(`{"model":"m","stream":true}`))
		for k, c := range chunks {
			r.AddChunk([]byte(c), time.Duration(10*(k+1))*time.Millisecond)
		}
		return r
	}
	content := "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"error\"}}\n\n"
	recs := []*record.Record{
		// Anthropic's overloaded_error, cut inside "event: error".
		mk(1, "/v1/messages", true, 200, "", content+"event: err", "or\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"),
		// OpenAI-style, then the upstream broke the connection.
		mk(2, "/v1/chat/completions", true, 200, record.ErrUpstreamReset, "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n", "data: {\"err", "or\":{\"message\":\"x\",\"type\":\"server_error\"}}\n\n"),
		// Gemini's JSON array.
		mk(3, "/v1beta/models/g:streamGenerateContent", true, 200, "", "[{\n  \"candidates\": []\n}\n", ",\r\n{\n  \"error\": {\n    \"code\": 500\n  }\n}\n]"),
		// Content that says "error": no error.
		mk(4, "/v1/messages", true, 200, "", content, content),
		// capture: meta: no bytes stored, nothing to tell.
		mk(5, "/v1/chat/completions", false, 200, "", "data: {\"error\":{\"message\":\"x\"}}\n\n"),
		// An error status keeps upstream_status.
		mk(6, "/v1/messages", true, 529, record.ErrUpstreamStatus, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}\n\n"),
		// Typed live already.
		mk(7, "/v1/chat/completions", true, 200, record.ErrUpstreamStreamError, "data: {\"error\":{\"message\":\"x\"}}\n\n"),
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	closeWriter(t, w)
	errorType := func(i int) string {
		return mustQuery(t, chURL, db, "SELECT error_type FROM stream_logs WHERE request_id = '"+string(recs[i].ID[:])+"'")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts := ReparseOptions{URLs: []string{chURL}, Database: db, Kinds: map[string]record.Kind{"llm": record.KindSSE}}
	res, err := Reparse(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rows != 7 || res.ErrorType != 3 || res.Mutations != 1 {
		t.Fatalf("run: %+v, want 7 rows, 3 error types changed in 1 mutation", *res)
	}
	for i, want := range []string{
		record.ErrUpstreamStreamError, record.ErrUpstreamStreamError, record.ErrUpstreamStreamError,
		"", "", record.ErrUpstreamStatus, record.ErrUpstreamStreamError,
	} {
		if got := errorType(i); got != want {
			t.Errorf("row %d: error_type %q, want %q", i+1, got, want)
		}
	}
	if res, err := Reparse(ctx, opts); err != nil || res.Changed != 0 {
		t.Errorf("second run: %+v %v", res, err)
	}
}

// TestReparseManyColumnsManyRows: 17,000 rows each with three columns to
// change (a Gemini row's tokens_in, tokens_out and model) fit no single
// mutation under ClickHouse's max_ast_elements (50,000: one IN list entry
// a column a row); they go in several, and every row is repaired. One
// mutation of MutationRows (20,000) rows was refused ("AST is too big") at
// every run, and nothing was written.
func TestReparseManyColumnsManyRows(t *testing.T) {
	chURL, db := testDB(t)
	w, err := New(Options{URL: chURL, Database: db, SpoolDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	gem := recordedRecord(t, 2, "gemini.sse", "gemini", "/v1beta/models/gemini-2.0-flash:streamGenerateContent", true, now)
	gem.TTFT, gem.TokensIn, gem.TokensOut = 520*time.Millisecond, -1, -1
	gem.SetRequestBody([]byte(`{"contents":[{"parts":[{"text":"Tell a story"}]}]}`))
	seed := gem.IDString()
	if err := w.Write(gem); err != nil {
		t.Fatal(err)
	}
	closeWriter(t, w)
	const copies = 17_000
	var cols []string
	for _, c := range columns {
		if c.name == "request_id" {
			cols = append(cols, "lower(hex(MD5(toString(number))))")
			continue
		}
		cols = append(cols, c.name)
	}
	mustQuery(t, chURL, db, "INSERT INTO stream_logs SELECT "+strings.Join(cols, ", ")+" FROM stream_logs CROSS JOIN numbers("+
		strconv.Itoa(copies)+") WHERE request_id = '"+seed+"'")
	var notes []string
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := Reparse(ctx, ReparseOptions{URLs: []string{chURL}, Database: db,
		Kinds: map[string]record.Kind{"gemini": record.KindSSE}, Note: func(l string) { notes = append(notes, l) }})
	if err != nil {
		t.Fatalf("%v (%+v)", err, res)
	}
	if res.Changed != copies+1 || res.Model != copies+1 || res.Mutations < 2 {
		t.Fatalf("%+v; want %d rows changed in several mutations", *res, copies+1)
	}
	if n := mustQuery(t, chURL, db, "SELECT count() FROM stream_logs WHERE tokens_in = 9 AND tokens_out = 19 AND model = 'gemini-2.0-flash'"); n != strconv.Itoa(copies+1) {
		t.Fatalf("%s rows repaired, want %d", n, copies+1)
	}
	if len(notes) != 0 {
		t.Errorf("notes with no mutation left from before: %q", notes)
	}
}

// TestReparseWaitsOnlyForItsOwn: a mutation of the table that never
// finishes (18.16 keeps a failing one unfinished, saying nothing) is
// named before the run's own, which queue behind it; the wait counts only
// the run's own. Before, the run waited silently on it for WaitTimeout.
func TestReparseWaitsOnlyForItsOwn(t *testing.T) {
	chURL, db := testDB(t)
	w, err := New(Options{URL: chURL, Database: db, SpoolDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	resp := recordedRecord(t, 1, "responses.sse", "openai", "/v1/responses", true, now)
	resp.TTFT, resp.TokensIn, resp.TokensOut = 804*time.Millisecond, 21, 9
	if err := w.Write(resp); err != nil {
		t.Fatal(err)
	}
	closeWriter(t, w)
	mustQuery(t, chURL, db, "ALTER TABLE stream_logs UPDATE instance = toString(throwIf(route = 'openai')) WHERE route = 'openai'")
	var notes []string
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Reparse(ctx, ReparseOptions{URLs: []string{chURL}, Database: db, WaitTimeout: 3 * time.Second,
		Kinds: map[string]record.Kind{"openai": record.KindSSE}, Note: func(l string) { notes = append(notes, l) }})
	if res == nil || res.Mutations != 1 {
		t.Fatalf("%+v, %v; want one mutation sent", res, err)
	}
	if len(notes) == 0 || !strings.Contains(notes[0], "1 mutation(s) of "+db+".stream_logs") || !strings.Contains(notes[0], "unfinished before this run") {
		t.Fatalf("notes %q; want the mutation left from before named", notes)
	}
	// Its own queues behind the one that never finishes: the wait ends at
	// WaitTimeout counting its own only.
	if err == nil || !strings.Contains(err.Error(), "1 mutations of "+db+".stream_logs") {
		t.Fatalf("err %v; want its own one mutation unfinished", err)
	}
}
