package quota

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// A Redis that answers reads but refuses writes, as QA found it: out of
// memory (maxmemory 1, noeviction) or a replica (READONLY). Each case
// breaks and repairs a private redis-server with the test's own client.
var writeRefusals = []struct {
	name           string
	break_, repair func(t *testing.T, c rueidis.Client)
}{
	{
		name: "oom",
		break_: func(t *testing.T, c rueidis.Client) {
			redisDo(t, c, "CONFIG", "SET", "maxmemory-policy", "noeviction")
			redisDo(t, c, "CONFIG", "SET", "maxmemory", "1")
		},
		repair: func(t *testing.T, c rueidis.Client) { redisDo(t, c, "CONFIG", "SET", "maxmemory", "0") },
	},
	{
		name: "readonly",
		break_: func(t *testing.T, c rueidis.Client) {
			// A master that does not exist: the replica keeps serving
			// reads (replica-serve-stale-data) and refuses writes.
			host, port, _ := strings.Cut(servicetest.FreeAddr(t), ":")
			redisDo(t, c, "REPLICAOF", host, port)
		},
		repair: func(t *testing.T, c rueidis.Client) { redisDo(t, c, "REPLICAOF", "NO", "ONE") },
	},
}

func redisDo(t *testing.T, c rueidis.Client, args ...string) {
	t.Helper()
	if err := c.Do(context.Background(), c.B().Arbitrary(args...).Build()).Error(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
}

// TestNoFlappingWhileRedisRefusesWrites: while Redis answers PING and reads
// but refuses the bucket script's writes, the limiter stays on its fallback
// (one switch, one warning) instead of going back to Redis at every probe,
// and it returns once, when writes work again. A limiter built by a reload
// meanwhile (Adopt) starts on the fallback without a warning of its own,
// and only it logs the return.
func TestNoFlappingWhileRedisRefusesWrites(t *testing.T) {
	for _, tt := range writeRefusals {
		t.Run(tt.name, func(t *testing.T) {
			srv := startOwnRedis(t)
			c := rawClient(t, srv.addr)
			var logs servicetest.Buffer
			o := Options{
				RedisAddr:     srv.addr,
				Default:       600000, // never the limit: every request is admitted
				Timeout:       time.Second,
				ProbeInterval: 20 * time.Millisecond,
				Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
			}
			l, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			ctx := context.Background()
			if d := l.Take(ctx, "acme", ""); d.Source != SourceRedis {
				t.Fatalf("before the break %+v: want a Redis decision", d)
			}

			tt.break_(t, c)
			// Leased tokens may admit the first requests; the first Redis
			// decision fails and switches.
			deadline := time.Now().Add(5 * time.Second)
			for l.Take(ctx, "acme", "").Source != SourceLocal {
				if time.Now().After(deadline) {
					t.Fatalf("no fallback decision within 5s; stats %+v", l.Stats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			// 50 probe intervals: the old probe (PING/EXISTS) switched back
			// at each one.
			var after Decision
			for end := time.Now().Add(time.Second); time.Now().Before(end); {
				if d := l.Take(ctx, "acme", ""); d.Source != SourceLocal || !d.Allowed {
					after = d
				}
				time.Sleep(2 * time.Millisecond)
			}
			if after != (Decision{}) {
				t.Fatalf("decision %+v while Redis refuses writes: want every one local", after)
			}
			if st := l.Stats(); st.ToFallback != 1 || st.ToRedis != 0 {
				t.Fatalf("switches %+v: want exactly one, to the fallback", st)
			}

			// A reload now: the new limiter connects (Redis answers) but
			// must not decide by Redis.
			var logs2 servicetest.Buffer
			o.Default = 300000
			o.Logger = slog.New(slog.NewTextHandler(&logs2, nil))
			l2, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer l2.Close()
			l2.Adopt(l)
			if d := l2.Take(ctx, "acme", ""); d.Source != SourceLocal || !d.Allowed {
				t.Fatalf("reloaded limiter %+v: want local while Redis refuses writes", d)
			}
			if st := l2.Stats(); st.RedisErrors != 0 {
				t.Fatalf("reloaded limiter asked Redis: %+v", st)
			}

			tt.repair(t, c)
			for _, lim := range []*Limiter{l, l2} {
				deadline = time.Now().Add(5 * time.Second)
				for lim.Take(ctx, "acme", "").Source == SourceLocal {
					if time.Now().After(deadline) {
						t.Fatalf("still local 5s after the repair; stats %+v", lim.Stats())
					}
					time.Sleep(5 * time.Millisecond)
				}
				if st := lim.Stats(); st.ToFallback != 1 || st.ToRedis != 1 {
					t.Fatalf("switches %+v: want exactly one each way", st)
				}
			}
			wantLines(t, logs.String(), "redis unavailable", 1)
			wantLines(t, logs.String(), "reachable again", 0) // superseded: l2 says it
			wantLines(t, logs2.String(), "redis unavailable", 0)
			wantLines(t, logs2.String(), "reachable again", 1)
		})
	}
}

// wantLines checks that log holds n lines containing msg.
func wantLines(t *testing.T, log, msg string, n int) {
	t.Helper()
	if got := strings.Count(log, msg); got != n {
		t.Fatalf("%d log lines with %q, want %d:\n%s", got, msg, n, log)
	}
}
