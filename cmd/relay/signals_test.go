package main

import (
	"bufio"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSignalsDuringDrain: a SIGHUP and a second SIGINT that come while the
// relay drains after SIGTERM are logged and ignored: the stream in flight
// ends whole and the process exits 0. Before the fix the handler was gone
// by then, and either signal's default action killed the process, cutting
// the stream and losing the rows in hand.
func TestSignalsDuringDrain(t *testing.T) {
	const events = 10
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for i := range events {
			fmt.Fprintf(w, "data: {\"choices\":[{\"delta\":{\"content\":\"e%d\"}}]}\n\n", i)
			fl.Flush()
			time.Sleep(150 * time.Millisecond)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	}))
	t.Cleanup(up.Close)
	addr, cfg := showRelayConfig(t, "  - {name: chat, path: /v1/chat/completions, upstream: \""+up.URL+"\", auth_env: QA_GEMINI_KEY}\n")
	p := startRelayProc(t, cfg)
	waitReady(t, "http://"+addr)

	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true}`))
	req.Header.Set("Authorization", "Bearer sk-relay-show-test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	for _, s := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT} {
		if err := p.cmd.Process.Signal(s); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var body strings.Builder
	_, err = br.WriteTo(&body)
	if err != nil || !strings.Contains(body.String(), fmt.Sprintf("e%d", events-1)) || !strings.HasSuffix(body.String(), "data: [DONE]\n\n") {
		t.Fatalf("the stream in flight did not end whole (%v): %q\nstderr:\n%s", err, body.String(), p.errOut.String())
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("relay exited with %v; stderr:\n%s", err, p.errOut.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("relay did not exit; stderr:\n%s", p.errOut.String())
	}
	if n := strings.Count(p.errOut.String(), "signal ignored: shutting down already"); n != 2 {
		t.Errorf("%d signals logged as ignored, want 2 (SIGHUP, SIGINT); stderr:\n%s", n, p.errOut.String())
	}
}
