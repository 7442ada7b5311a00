package chlog

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hangProxy forwards every query to the real ClickHouse except inserts,
// which it reads and then holds without an answer until the client gives
// up: a server that hangs at shutdown.
type hangProxy struct {
	t      testing.TB
	target string
	held   atomic.Int32 // inserts being held
}

func newHangProxy(t testing.TB, target string) (*hangProxy, string) {
	p := &hangProxy{t: t, target: target}
	srv := httptest.NewServer(p)
	t.Cleanup(srv.Close)
	return p, srv.URL
}

func (p *hangProxy) ServeHTTP(rw http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return
	}
	if strings.HasPrefix(req.URL.Query().Get("query"), "INSERT") {
		p.held.Add(1)
		<-req.Context().Done()
		return
	}
	fwd, err := http.NewRequest(http.MethodPost, p.target+req.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		p.t.Error(err)
		return
	}
	fwd.Header = req.Header.Clone()
	resp, err := http.DefaultClient.Do(fwd)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadGateway)
		return
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, h := range []string{"Content-Type", "X-ClickHouse-Exception-Code"} {
		if v := resp.Header.Get(h); v != "" {
			rw.Header().Set(h, v)
		}
	}
	rw.WriteHeader(resp.StatusCode)
	_, _ = rw.Write(answer)
}

// TestCloseDeadlineSpoolsEverything: Close whose ctx ends while an insert
// hangs (ClickHouse stuck at SIGTERM) must still leave every written row
// in the spool by the time it returns: the block in flight and the current
// block, written while the flusher was busy. Before the fix the current
// block was never spooled (the flusher's stop path took only the send
// queue) and Close returned while the insert still held its block, so a
// process exiting after Close lost both, uncounted.
func TestCloseDeadlineSpoolsEverything(t *testing.T) {
	chURL, db := testDB(t)
	p, proxyURL := newHangProxy(t, chURL)
	dir := t.TempDir()
	w := newWriter(t, Options{URL: proxyURL, Database: db, SpoolDir: dir, FlushInterval: time.Hour,
		BatchRows: 3, InsertTimeout: 20 * time.Second, Retries: -1})

	ids := writeSSE(w, 3) // a full block: the flusher sends it, and hangs
	waitFor(t, "the flusher's insert to hang", 30*time.Second, func() bool { return p.held.Load() > 0 })
	for id := range writeSSE(w, 2) { // the current block, while the flusher is busy
		ids[id] = true
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := w.Close(ctx); err == nil {
		t.Fatal("Close: want the ctx error, the insert hangs")
	}
	got := map[string]bool{}
	for _, r := range spooledRowList(t, dir) {
		if got[r.RequestID] {
			t.Errorf("row %s spooled twice", r.RequestID)
		}
		got[r.RequestID] = true
	}
	for id := range ids {
		if !got[id] {
			t.Errorf("row %s is not in the spool after Close returned", id)
		}
	}
	if s := w.Stats(); s.RowsDropped != 0 {
		t.Errorf("RowsDropped = %d, want 0", s.RowsDropped)
	}
}
