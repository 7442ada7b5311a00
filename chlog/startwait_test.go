package chlog

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestStartWaitSaysSo: a ClickHouse that takes the connection and never
// answers holds the start for insert_timeout; after a few seconds the log
// says what the start waits for, and the writer then starts spooling, its
// line naming no insert (there was none). Before, the log stayed empty for
// the whole insert_timeout, and then spoke of an insert's outcome.
func TestStartWaitSaysSo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	var logs servicetest.Buffer
	w := newWriter(t, Options{URL: "http://" + ln.Addr().String(), Database: "startwait", FlushInterval: time.Hour,
		InsertTimeout: startWaitNote + 3*time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer closeWriter(t, w)
	out := logs.String()
	if !strings.Contains(out, "has not answered the start-up schema check yet") {
		t.Errorf("no line saying what the start waited for:\n%s", out)
	}
	if !strings.Contains(out, "unreachable at start") || strings.Contains(out, "insert outcome") {
		t.Errorf("the start's failure line:\n%s", out)
	}
}
