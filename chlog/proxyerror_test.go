package chlog

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestProxyErrorAtStartSpools: a proxy or load balancer in front of
// ClickHouse (chproxy, nginx) that answers 502 or 503 without a ClickHouse
// code while the server starts is an unreachable server: the writer starts
// and spools, and the replayer says "still unreachable", never that the
// table is blocked. The relay exited 1 (a crash loop), and after a late
// start raised relay_storage_blocked. A 4xx without a code (a wrong path
// behind the proxy) is still refused at start.
func TestProxyErrorAtStartSpools(t *testing.T) {
	var status atomic.Int64
	status.Store(http.StatusBadGateway)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte("<html>bad gateway</html>"))
	}))
	defer srv.Close()
	var log schemaLog
	w, err := New(Options{URL: srv.URL, SpoolDir: t.TempDir(), FlushInterval: 100 * time.Millisecond,
		InsertTimeout: 5 * time.Second, Logger: log.logger()})
	if err != nil {
		t.Fatalf("start behind a proxy answering 502: %v", err)
	}
	defer closeWriter(t, w)
	_ = w.Write(sseRecord(1, 2))
	waitFor(t, "the replayer to try again", 30*time.Second, func() bool {
		return strings.Contains(log.String(), "still unreachable")
	})
	if st := w.Stats(); st.Blocked != 0 {
		t.Fatalf("a proxy's 502 blocked the queue: %+v\n%s", st, log.String())
	}
	status.Store(http.StatusNotFound)
	if _, err := New(Options{URL: srv.URL, SpoolDir: t.TempDir(), InsertTimeout: 5 * time.Second}); err == nil {
		t.Fatal("a 404 without a ClickHouse code at start: no error")
	}
}
