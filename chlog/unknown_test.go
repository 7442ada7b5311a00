package chlog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/stream-relay/stream-relay/record"
)

// How cutProxy breaks the answer to an insert.
const (
	passThrough    = iota
	cutBefore      // read the request, close the connection: never applied
	cutAfter       // forward, the server applies it, close without an answer
	brokenChunked  // forward, then answer 200 with a chunked body cut short
	cutAfterOnce   // cutAfter for the first insert, then pass through
	gatewayTimeout // forward, then answer 504 without an exception code
	hangInsert     // read the request, answer nothing until the client gives up: never applied
	refuseInsert   // answer an exception a query gets before it runs (202): never applied
	rejectInsert   // answer that the block's bytes are broken (33): never applied
	exceptionIn200 // answer 200 with an exception in the body (sent after the status): never applied
)

// cutProxy stands between the writer and the real ClickHouse and breaks
// the connection of inserts at the point a test asks for. It is no fake of
// ClickHouse: every request it lets through is answered by the server.
type cutProxy struct {
	t      testing.TB
	target string
	mode   atomic.Int32
	hold   atomic.Bool  // answer presence lookups with 503
	junk   atomic.Bool  // answer presence lookups 200 with an exception as their body
	refuse atomic.Int32 // answer this many more presence lookups with 503
	looked atomic.Int32 // presence lookups that reached the proxy
	sent   atomic.Int32 // inserts forwarded to the server (or held: hangInsert)
	tried  atomic.Int32 // inserts that reached the proxy, whatever it did with them
}

func newCutProxy(t testing.TB, target string) (*cutProxy, string) {
	p := &cutProxy{t: t, target: target}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv.URL
}

// refused takes one of the lookups a test asked to refuse, if any is left.
func (p *cutProxy) refused() bool {
	for {
		n := p.refuse.Load()
		if n <= 0 {
			return false
		}
		if p.refuse.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

func (p *cutProxy) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	query := req.URL.Query().Get("query")
	insert := strings.HasPrefix(query, "INSERT")
	if strings.Contains(query, "request_id IN ids") {
		p.looked.Add(1)
		if p.hold.Load() || p.refused() {
			http.Error(rw, "held by the test", http.StatusServiceUnavailable)
			return
		}
		if p.junk.Load() {
			_, _ = io.WriteString(rw, "Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded (held by the test)\n")
			return
		}
	}
	mode := int(p.mode.Load())
	if insert {
		p.tried.Add(1)
	}
	if insert && mode == cutBefore {
		p.cut(rw, "")
		return
	}
	if insert && mode == refuseInsert {
		rw.Header().Set("X-ClickHouse-Exception-Code", "202")
		http.Error(rw, "Code: 202, e.displayText() = DB::Exception: Too many simultaneous queries. Maximum: 1 (held by the test)", http.StatusInternalServerError)
		return
	}
	if insert && mode == rejectInsert {
		rw.Header().Set("X-ClickHouse-Exception-Code", "33")
		http.Error(rw, "Code: 33, e.displayText() = DB::Exception: Cannot read all data (held by the test)", http.StatusInternalServerError)
		return
	}
	if insert && mode == exceptionIn200 {
		_, _ = io.WriteString(rw, "Code: 241, e.displayText() = DB::Exception: Memory limit (for query) exceeded (held by the test)\n")
		return
	}
	if insert && mode == hangInsert {
		p.sent.Add(1) // counted as held
		<-req.Context().Done()
		return
	}
	fwd, err := http.NewRequest(http.MethodPost, p.target+req.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		p.t.Error(err)
		return
	}
	for _, h := range []string{"Content-Type", "X-ClickHouse-User", "X-ClickHouse-Key"} {
		if v := req.Header.Get(h); v != "" {
			fwd.Header.Set(h, v)
		}
	}
	if insert {
		// Counted before the server can apply it: a test that waits for
		// the rows and then reads sent must find them counted.
		p.sent.Add(1)
	}
	resp, err := http.DefaultClient.Do(fwd)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadGateway)
		return
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if insert {
		switch mode {
		case cutAfterOnce:
			p.mode.Store(passThrough)
			fallthrough
		case cutAfter:
			p.cut(rw, "")
			return
		case gatewayTimeout:
			http.Error(rw, "upstream timed out", http.StatusGatewayTimeout)
			return
		case brokenChunked:
			p.cut(rw, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n10\r\nOk.")
			return
		}
	}
	for _, h := range []string{"Content-Type", "X-ClickHouse-Exception-Code"} {
		if v := resp.Header.Get(h); v != "" {
			rw.Header().Set(h, v)
		}
	}
	rw.WriteHeader(resp.StatusCode)
	_, _ = rw.Write(answer)
}

// cut writes raw (if any) on the bare connection and closes it.
func (p *cutProxy) cut(rw http.ResponseWriter, raw string) {
	conn, buf, err := http.NewResponseController(rw).Hijack()
	if err != nil {
		p.t.Error(err)
		return
	}
	if raw != "" {
		_, _ = buf.WriteString(raw)
		_ = buf.Flush()
	}
	_ = conn.Close()
}

// TestInsertOutcomeClass: a connection cut after the request was sent, and
// a 200 whose body broke off, are unknown outcomes; a refused connection
// and an exception the server answered are plain failures.
func TestInsertOutcomeClass(t *testing.T) {
	chURL, db := testDB(t)
	if _, err := chQuery(chURL, "", "CREATE DATABASE "+db); err != nil {
		t.Fatal(err)
	}
	if _, err := chQuery(chURL, db, createTableSQL(db, "stream_logs", false)); err != nil {
		t.Fatal(err)
	}
	native, _ := encodeGroups(t, 1, roundTripRecords())
	p, proxyURL := newCutProxy(t, chURL)
	tests := []struct {
		name    string
		url     string
		mode    int
		table   string
		unknown bool
	}{
		{"cut before the server saw it", proxyURL, cutBefore, "stream_logs", true},
		{"cut after the server applied it", proxyURL, cutAfter, "stream_logs", true},
		{"200 with a broken chunked body", proxyURL, brokenChunked, "stream_logs", true},
		{"connection refused", closedPortURL(t), passThrough, "stream_logs", false},
		{"exception", proxyURL, passThrough, "no_such_table", false},
		{"gateway timeout after forwarding", proxyURL, gatewayTimeout, "stream_logs", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p.mode.Store(int32(tt.mode))
			c := newClient(&Options{URL: tt.url, Database: db, Table: tt.table})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := c.insert(ctx, native, "test-"+db+"-"+strings.ReplaceAll(tt.name, " ", "-"), "")
			if err == nil {
				t.Fatal("insert succeeded")
			}
			if got := errors.Is(err, errUnknownOutcome); got != tt.unknown {
				t.Fatalf("unknown outcome = %v for %v; want %v", got, err, tt.unknown)
			}
		})
	}
}

// TestUnknownOutcomeExactlyOnce: the writer's insert is cut (before or
// after the server applied it, or its 200 answer breaks off); the block is
// spooled flagged "u", and the replayer settles it against the real server
// before any re-send: every row stored exactly once, the block re-sent only
// when the server did not have it.
func TestUnknownOutcomeExactlyOnce(t *testing.T) {
	tests := []struct {
		name     string
		mode     int
		forwards int32 // inserts the server received in all
	}{
		{"cut before", cutBefore, 1},
		{"cut after applied", cutAfter, 1},
		{"broken 200 after applied", brokenChunked, 1},
		// A 200 whose body is an exception: not taken for a success
		// (the rows were lost: Flush nil, nothing stored or spooled).
		{"exception in a 200", exceptionIn200, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			chURL, db := testDB(t)
			p, proxyURL := newCutProxy(t, chURL)
			dir := t.TempDir()
			w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: dir, FlushInterval: time.Hour, Retries: -1})
			p.hold.Store(true)
			p.mode.Store(int32(tt.mode))
			want := map[string]bool{}
			for i := range 5 {
				r := sseRecord(i, 3)
				want[string(r.ID[:])] = true
				w.Write(r)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err := w.Flush(ctx)
			cancel()
			if !errors.Is(err, errUnknownOutcome) {
				t.Fatalf("Flush: %v; want an unknown outcome", err)
			}
			names := spoolNames(t, dir)
			if len(names) != 1 || !parseMust(t, names[0]).unknown {
				t.Fatalf("spool %v; want one file flagged u", names)
			}

			p.mode.Store(passThrough)
			p.hold.Store(false)
			w.kickReplayer()
			waitFor(t, "spool drained", 30*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
			closeWriter(t, w)
			assertExactlyOnce(t, chURL, db, want)
			if got := p.sent.Load(); got != tt.forwards {
				t.Errorf("server received %d inserts; want %d", got, tt.forwards)
			}
		})
	}
}

// TestUnknownOutcomeRetryLive: with retries, the live sender settles an
// insert cut after the server applied it before its retry: not re-sent,
// nothing spooled. When the presence check itself fails once, the sender
// backs off and checks again within its retries instead of giving up.
func TestUnknownOutcomeRetryLive(t *testing.T) {
	for _, tt := range []struct {
		name    string
		refuse  int32 // presence lookups answered 503 first
		retries int
	}{
		{"settled at once", 0, 2},
		{"presence check refused once", 1, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			chURL, db := testDB(t)
			p, proxyURL := newCutProxy(t, chURL)
			dir := t.TempDir()
			w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: dir, FlushInterval: time.Hour, Retries: tt.retries})
			p.mode.Store(cutAfterOnce)
			p.refuse.Store(tt.refuse)
			want := map[string]bool{}
			for i := range 4 {
				r := sseRecord(i, 2)
				want[string(r.ID[:])] = true
				w.Write(r)
			}
			flush(t, w)
			closeWriter(t, w)
			assertExactlyOnce(t, chURL, db, want)
			if got := p.sent.Load(); got != 1 {
				t.Errorf("server received %d inserts; want 1 (the cut one, found present)", got)
			}
			if got, want := p.looked.Load(), 1+tt.refuse; got != want {
				t.Errorf("presence lookups = %d; want %d", got, want)
			}
			if names := spoolNames(t, dir); len(names) != 0 {
				t.Errorf("spool %v; want empty", names)
			}
			if s := w.Stats(); s.InsertErrors != 1 || s.RowsWritten != 4 || s.RowsSpooled != 0 {
				t.Errorf("stats %+v; want 1 insert error, 4 rows written, none spooled", s)
			}
		})
	}
}

// TestPartlyStoredStaysUnknown: a block whose presence check found some of
// its rows stored, and whose re-send of the rest then failed for good, is
// given up as still unknown, so that it goes to the spool flagged "u" and
// is checked again before it is sent. Before the fix the failure's own
// verdict (known not stored) came back, the whole block was spooled "k",
// and the replay sent the rows already stored a second time.
func TestPartlyStoredStaysUnknown(t *testing.T) {
	chURL, db := testDB(t)
	p, proxyURL := newCutProxy(t, chURL)
	w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: t.TempDir(), FlushInterval: time.Hour, Retries: -1})
	defer closeWriter(t, w)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs := make([]*record.Record, 10) // one set of rows: the same times in both blocks
	for i := range recs {
		recs[i] = sseRecord(i, 3)
	}
	encode := func(seq uint64, rs []*record.Record) (blockMeta, []byte) {
		b := newBlock()
		for _, r := range rs {
			b.add(r)
		}
		var buf proto.Buffer
		if err := b.encode(&buf); err != nil {
			t.Fatal(err)
		}
		return blockMeta{seq: seq, rows: b.rows, first: b.first, last: b.last}, buf.Buf
	}
	m1, half := encode(1, recs[:5]) // rows 0..4, stored
	if unknown, err := w.deliver(ctx, m1, half, false, 0); err != nil || unknown {
		t.Fatalf("storing the first half: unknown %v, %v", unknown, err)
	}
	m2, whole := encode(2, recs) // rows 0..9
	p.mode.Store(refuseInsert)
	unknown, err := w.deliver(ctx, m2, whole, true, 0)
	if err == nil || !unknown {
		t.Fatalf("deliver = unknown %v, %v; want an error and the outcome still unknown (rows 0..4 stored)", unknown, err)
	}
	if got := p.looked.Load(); got != 1 {
		t.Errorf("presence lookups = %d, want 1", got)
	}
	// The rest refused for good (broken bytes): known, so that the
	// replayer sets the file aside rather than retrying it for ever.
	p.mode.Store(rejectInsert)
	unknown, err = w.deliver(ctx, m2, whole, true, 0)
	if err == nil || unknown || classify(err) != failReject {
		t.Fatalf("deliver = unknown %v, %v; want the refusal, known", unknown, err)
	}
}

// TestPresenceCheckIgnoresJunk: a presence lookup answered 200 with an
// exception as its body is no answer: the row is not taken for stored (an
// error line counted as an id, and a one-row block looked stored: its row
// was dropped from the spool, never inserted).
func TestPresenceCheckIgnoresJunk(t *testing.T) {
	chURL, db := testDB(t)
	p, proxyURL := newCutProxy(t, chURL)
	dir := t.TempDir()
	w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: dir, FlushInterval: time.Hour, Retries: -1})
	p.hold.Store(true)
	p.mode.Store(cutBefore)
	r := sseRecord(1, 3)
	want := map[string]bool{string(r.ID[:]): true}
	w.Write(r)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	if err := w.Flush(ctx); !errors.Is(err, errUnknownOutcome) {
		t.Fatalf("Flush: %v; want an unknown outcome", err)
	}
	cancel()
	p.mode.Store(passThrough)
	p.junk.Store(true)
	p.hold.Store(false)
	looked := p.looked.Load()
	w.kickReplayer()
	waitFor(t, "a presence lookup answered with junk", 30*time.Second, func() bool { return p.looked.Load() > looked })
	p.junk.Store(false)
	w.kickReplayer()
	waitFor(t, "spool drained", 60*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	closeWriter(t, w)
	assertExactlyOnce(t, chURL, db, want)
}

// TestReplayBacksOffUnderTraffic: while ClickHouse refuses inserts, the
// replayer waits out its backoff (0.8 s, 1.6 s, 3.2 s, ...) although blocks
// keep being spooled; each spooled block used to wake it, an insert
// attempt every flush interval (about 25 in this test's 5 s).
func TestReplayBacksOffUnderTraffic(t *testing.T) {
	chURL, db := testDB(t)
	p, proxyURL := newCutProxy(t, chURL)
	w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: t.TempDir(), FlushInterval: 200 * time.Millisecond, Retries: -1})
	p.mode.Store(refuseInsert)
	tried := p.tried.Load()
	for i := range 25 { // a block every flush interval, 5 s
		w.Write(sseRecord(i, 1))
		time.Sleep(200 * time.Millisecond)
	}
	if n := p.tried.Load() - tried; n > 8 {
		t.Fatalf("%d insert attempts in 5 s of refusals, want at most 8 (the first, then the backoff's)", n)
	} else {
		t.Logf("%d insert attempts in 5 s of refusals", n)
	}
	p.mode.Store(passThrough)
	waitFor(t, "spool drained", 60*time.Second, func() bool { return w.Stats().SpoolFiles == 0 })
	closeWriter(t, w)
}
