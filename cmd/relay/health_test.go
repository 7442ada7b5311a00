package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestHealth: relay health asks a running relay (the real binary, serving)
// and exits 0 while it is ready; 1 once it drains (its /readyz says 503),
// and 1 when nothing listens.
func TestHealth(t *testing.T) {
	addr, cfg := showRelayConfig(t, "  - {name: chat, path: /v1/chat/completions, upstream: \"http://127.0.0.1:1\", auth_env: QA_GEMINI_KEY}\n")
	p := startRelayProc(t, cfg)
	waitReady(t, "http://"+addr)
	out, errOut, code := relayExec(t, "health", "-url", "http://"+addr+"/readyz")
	if code != 0 || !strings.Contains(out, "200") {
		t.Fatalf("ready relay: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	_, errOut, code = relayExec(t, "health", "-url", "http://"+servicetest.FreeAddr(t)+"/readyz", "-timeout", "5s")
	if code != 1 || !strings.Contains(errOut, "relay: health:") {
		t.Fatalf("nothing listening: exit %d, stderr %q", code, errOut)
	}
	// A URL's password and query are not shown, answered or not.
	for _, u := range []string{"http://u:HPASS@" + addr + "/nope?key=HQKEY", "http://u:HPASS/x@" + addr + "/nope?key=HQKEY"} {
		_, errOut, code = relayExec(t, "health", "-url", u)
		if code != 1 || !strings.Contains(errOut, "http://redacted@"+addr+"/nope?redacted") || strings.Contains(errOut, "HPASS") || strings.Contains(errOut, "HQKEY") {
			t.Fatalf("URL with credentials: exit %d, stderr %q", code, errOut)
		}
	}
	_, errOut, code = relayExec(t, "health", "-url", "http://u:HPASS@"+servicetest.FreeAddr(t)+"/?key=HQKEY", "-timeout", "5s")
	if code != 1 || strings.Contains(errOut, "HPASS") || strings.Contains(errOut, "HQKEY") || !strings.Contains(errOut, "redacted") {
		t.Fatalf("URL with credentials, refused: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = relayExec(t, "health", "-timeout", "0s")
	if code != 1 || !strings.Contains(errOut, "-timeout=0s") {
		t.Fatalf("-timeout 0: exit %d, stderr %q", code, errOut)
	}
	// Stopped: 503 while it drains, then nothing listens.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, errOut, code = relayExec(t, "health", "-url", "http://"+addr+"/readyz")
		if code == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still healthy 10 s after SIGTERM: exit %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(errOut, "answered 503") && !strings.Contains(errOut, "connect") && !strings.Contains(errOut, "EOF") {
		t.Errorf("draining relay: stderr %q; want the 503 or a refused connection", errOut)
	}
}
