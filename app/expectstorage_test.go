package app

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stream-relay/stream-relay/bench/mockllm"
	"github.com/stream-relay/stream-relay/record"
)

// TestExpectContinueStorageFull: with storage.max_buffer_bytes at its
// least (four row slots) and streams held open until the storage has no
// room for another row, curl's 2 MiB upload (sent with "Expect:
// 100-continue", as curl does on its own past 1 MiB) gets the 503
// storage_overloaded with Retry-After and an X-Request-Id and uploads
// nothing; its row is kept and the storage counts one refusal.
//
// The storage is asked whether it would refuse without reserving a row
// (handlers' storageProbe, chlog.Writer.Overloaded).
func TestExpectContinueStorageFull(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	const limit = 4 << 20
	r := startRelayWith(t, "", func(c *Config) {
		c.Storage.MaxBufferBytes = 128 << 10
		c.Server.MaxBodyBytes = limit
		for i := range c.Routes {
			c.Routes[i].MaxBodyBytes = limit
		}
	})
	probe := any(r.app.store).(interface{ Overloaded() bool })

	// Streams held open, each holding its row slot, until the storage is
	// full.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for held := 0; !probe.Overloaded(); held++ {
		if held == 16 {
			t.Fatalf("storage not full with %d streams held open: %+v", held, r.app.store.Stats())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.base+"/v1/chat/completions",
			strings.NewReader(`{"model":"m","stream":true,"messages":[]}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+relayKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(mockllm.HeaderChunks, "1000")
		req.Header.Set(mockllm.HeaderDelayMs, "50")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			t.Fatalf("stream %d: %d before the storage was full", held, resp.StatusCode)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			buf := make([]byte, 4096)
			for {
				if _, err := resp.Body.Read(buf); err != nil {
					return
				}
			}
		}()
	}
	refused := r.app.store.Stats().Refused

	p := filepath.Join(t.TempDir(), "large.json")
	if err := os.WriteFile(p, []byte(`{"model":"m","pad":"`+strings.Repeat("a", 2<<20)+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(curl, "-s", "-o", "/dev/null", "-D", "-", "-w", "\n%{http_code} %{size_upload}", "-m", "20",
		"-H", "Content-Type: application/json", "-H", "Authorization: Bearer "+relayKey, "--data-binary", "@"+p,
		r.base+"/v1/chat/completions").Output()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if got := lines[len(lines)-1]; got != "503 0" {
		t.Fatalf("curl: %q (status, bytes uploaded), want \"503 0\":\n%s", got, out)
	}
	var id, retry string
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, ":"); ok {
			switch {
			case strings.EqualFold(k, "X-Request-Id"):
				id = strings.TrimSpace(v)
			case strings.EqualFold(k, "Retry-After"):
				retry = strings.TrimSpace(v)
			}
		}
	}
	if len(id) != record.IDLen || retry == "" {
		t.Errorf("the 503 has id %q, Retry-After %q:\n%s", id, retry, out)
	}
	if row := r.rows.wait(t, id); row.Status != http.StatusServiceUnavailable || row.ErrorType != record.ErrStorageOverloaded {
		t.Errorf("row %d %q, want 503 storage_overloaded", row.Status, row.ErrorType)
	}
	if n := r.app.store.Stats().Refused - refused; n != 1 {
		t.Errorf("the storage counted %d refusals, want 1", n)
	}
}
