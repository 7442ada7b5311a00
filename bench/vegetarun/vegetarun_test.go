package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/bench/procstat"
)

// TestTargetsFile reads the repository's own targets file the way run.sh
// does: URLs moved to another host, the Authorization header replaced, the
// bodies read from the repository root.
func TestTargetsFile(t *testing.T) {
	tgts, err := loadTargets("../vegeta/targets.http", "../..", "http://127.0.0.1:1234", "Bearer other")
	if err != nil {
		t.Fatal(err)
	}
	if len(tgts) != 2 {
		t.Fatalf("%d targets, want 2", len(tgts))
	}
	want := []string{"POST /v1/chat/completions", "POST /v1/chat/completions stream"}
	for i, tg := range tgts {
		if tg.URL != "http://127.0.0.1:1234/v1/chat/completions" {
			t.Errorf("target %d URL = %s", i, tg.URL)
		}
		if got := tg.Header["Authorization"]; len(got) != 1 || got[0] != "Bearer other" {
			t.Errorf("target %d Authorization = %q", i, got)
		}
		if !json.Valid(tg.Body) {
			t.Errorf("target %d body %q is not JSON", i, tg.Body)
		}
		if n := targetName(tg); n != want[i] {
			t.Errorf("target %d name = %q, want %q", i, n, want[i])
		}
	}
}

// TestAttack attacks a real server on loopback at a low rate and checks
// that what it counted matches what the server saw.
func TestAttack(t *testing.T) {
	var seen, badAuth atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		if r.Header.Get("Authorization") != "Bearer k" {
			badAuth.Add(1)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	dir := t.TempDir()
	targets := filepath.Join(dir, "t.http")
	body := filepath.Join(dir, "b.json")
	if err := os.WriteFile(body, []byte(`{"stream":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(targets, []byte("# one target\nPOST http://example.invalid/v1/x\nAuthorization: Bearer old\n@b.json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tgts, err := loadTargets(targets, dir, srv.URL, "Bearer k")
	if err != nil {
		t.Fatal(err)
	}
	o := options{rate: 40, dur: time.Second, timeout: 10 * time.Second}
	self := procstat.Group{Name: "server", PIDs: []int{os.Getpid()}}
	res := attackTarget(tgts[0], o, []procstat.Group{self})
	if res.Requests == 0 || int64(res.Requests) != seen.Load() {
		t.Errorf("counted %d requests, the server saw %d", res.Requests, seen.Load())
	}
	if res.Success != 1 || res.StatusCodes["200"] != int(res.Requests) || len(res.Errors) != 0 {
		t.Errorf("success %v, codes %v, errors %v", res.Success, res.StatusCodes, res.Errors)
	}
	if badAuth.Load() != 0 {
		t.Errorf("%d requests kept the old Authorization header", badAuth.Load())
	}
	if res.Name != "POST /v1/x stream" || res.BytesInMean != float64(len(`{"ok":true}`)) {
		t.Errorf("name %q, bytes in %v", res.Name, res.BytesInMean)
	}
	if _, ok := res.CPUPerReq["server"]; !ok {
		t.Errorf("no CPU for the watched process: %v", res.CPUPerReq)
	}
	if _, ok := res.CPUPerReq["vegeta"]; !ok {
		t.Errorf("no CPU for vegeta itself: %v", res.CPUPerReq)
	}
}
