package quota

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestSwitchLogMutesBlips: a real Redis paused (CLIENT PAUSE) for less than
// a probe interval, three times: each pause makes a decision miss its
// deadline and switch to the fallback, and the next probe switches back.
// Only the first pair of switches is logged at warning and info level; the
// next ones are at debug level. A fourth pause outlasts a probe: its switch
// was muted, the failed probe warns (with the count of muted switches) and
// the switch back is at info again. Every switch is counted.
func TestSwitchLogMutesBlips(t *testing.T) {
	srv := startOwnRedis(t)
	c := rawClient(t, srv.addr)
	var logs servicetest.Buffer
	l, err := New(Options{
		RedisAddr:      srv.addr,
		Default:        600000, // never the limit: every request is admitted
		Lease:          1,      // every decision asks Redis
		Timeout:        300 * time.Millisecond,
		ProbeInterval:  2 * time.Second, // well past a blip's pause
		SwitchLogQuiet: time.Hour,
		Logger:         slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	wait := func(want Source, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for l.Take(ctx, "acme", "").Source != want {
			if time.Now().After(deadline) {
				t.Fatalf("no decision from %v within %v; stats %+v\n%s", want, within, l.Stats(), logs.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	pause := func(d time.Duration) {
		t.Helper()
		redisDo(t, c, "CLIENT", "PAUSE", strconv.FormatInt(d.Milliseconds(), 10), "ALL")
	}
	wait(SourceRedis, 5*time.Second)
	for range 3 {
		pause(800 * time.Millisecond)
		wait(SourceLocal, 5*time.Second)
		wait(SourceRedis, 15*time.Second)
	}
	// A busy machine may add a blip of its own (a decision past its
	// deadline): counts of switches and debug lines are at least the
	// pauses', the warning and info lines exact.
	if st := l.Stats(); st.ToFallback < 3 || st.ToRedis != st.ToFallback {
		t.Fatalf("switches %+v: want three or more each way", st)
	}
	lines := func(level, msg string) int {
		n := 0
		for _, ln := range strings.Split(logs.String(), "\n") {
			if strings.Contains(ln, "level="+level) && strings.Contains(ln, msg) {
				n++
			}
		}
		return n
	}
	const down, up = "redis unavailable", "reachable again"
	for _, w := range []struct {
		level, msg string
		n          int
		atLeast    bool
	}{{"WARN", down, 1, false}, {"INFO", up, 1, false}, {"DEBUG", down, 2, true}, {"DEBUG", up, 2, true}} {
		if got := lines(w.level, w.msg); got != w.n && !(w.atLeast && got > w.n) {
			t.Fatalf("%d %s lines %q after three blips; want %d:\n%s", got, w.level, w.msg, w.n, logs.String())
		}
	}

	// An outage past a probe: muted at the switch, warned at the probe.
	pause(5 * time.Second)
	wait(SourceLocal, 5*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for lines("WARN", down) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no warning while the outage outlasted a probe:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	wait(SourceRedis, 20*time.Second)
	if st := l.Stats(); st.ToFallback < 4 || st.ToRedis != st.ToFallback {
		t.Fatalf("switches %+v: want four or more each way", st)
	}
	if got := lines("INFO", up); got != 2 {
		t.Fatalf("%d info lines of the return; want 2:\n%s", got, logs.String())
	}
	_, after, ok := strings.Cut(logs.String(), "switches_logged_at_debug=")
	if n, err := strconv.Atoi(strings.Fields(after + " ")[0]); !ok || err != nil || n < 2 {
		t.Fatalf("the outage's warning does not count the muted blips (two or more):\n%s", logs.String())
	}
}
