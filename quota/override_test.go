package quota

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestIgnoredOverrideWarnsOnce: an override field the limiter ignores keeps
// the file's limit and is logged once per tenant, field and value, however
// many decisions read it; a new invalid value is logged again.
func TestIgnoredOverrideWarnsOnce(t *testing.T) {
	tests := []struct {
		name, field, value string
		wantLimit          int
	}{
		{name: "rpm zero", field: "rpm", value: "0", wantLimit: 5},
		{name: "rpm negative", field: "rpm", value: "-5", wantLimit: 5},
		{name: "rpm not a number", field: "rpm", value: "600/min", wantLimit: 5},
		{name: "rpm fraction", field: "rpm", value: "1.5", wantLimit: 5},
		{name: "burst zero", field: "burst", value: "0", wantLimit: 5},
		{name: "burst negative", field: "burst", value: "-1", wantLimit: 5},
		{name: "tpm negative", field: "tpm", value: "-1", wantLimit: 5},
		// Past MaxLimit the buckets' levels and headers came out wrong
		// (Remaining 8999999999999 of 10^15; none at all at 2^63-1).
		{name: "rpm past the largest limit", field: "rpm", value: "1000000000000001", wantLimit: 5},
		{name: "rpm the largest integer", field: "rpm", value: "9223372036854775807", wantLimit: 5},
		{name: "burst past the largest limit", field: "burst", value: "1000000000001", wantLimit: 5},
		{name: "tpm past the largest limit", field: "tpm", value: "1000000000001", wantLimit: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs servicetest.Buffer
			l := newTestLimiter(t, true, Options{Default: 60, Burst: 5, CacheTTL: 5 * time.Second,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			c := rawClient(t, l.o.RedisAddr)
			cfg := l.o.KeyPrefix + "{acme}:cfg"
			redisDo(t, c, "HSET", cfg, tt.field, tt.value)
			ctx := context.Background()
			for i := 0; i < 20; i++ {
				if d := l.Take(ctx, "acme", ""); d.Limit != tt.wantLimit {
					t.Fatalf("request %d: %+v, want the file's Limit %d", i, d, tt.wantLimit)
				}
			}
			l.Debit(ctx, "acme", 10) // reads the hash too
			line := "tenant=acme key=" + cfg + " field=" + tt.field
			wantLines(t, logs.String(), line, 1)
			if !strings.Contains(logs.String(), "level=WARN") {
				t.Fatalf("want a warning:\n%s", logs.String())
			}

			// Another invalid value is another operator mistake: logged.
			redisDo(t, c, "HSET", cfg, tt.field, "x"+tt.value)
			deadline := time.Now().Add(l.o.CacheTTL + time.Second)
			for strings.Count(logs.String(), line) < 2 && time.Now().Before(deadline) {
				l.Take(ctx, "acme", "")
				time.Sleep(5 * time.Millisecond)
			}
			for i := 0; i < 20; i++ {
				l.Take(ctx, "acme", "")
			}
			wantLines(t, logs.String(), line, 2)
			wantLines(t, logs.String(), "tenant=acme", 2) // nothing about the valid fields
		})
	}
}

// TestValidOverridesLogNothing: valid override values, -1 and tpm 0
// included, are applied without a log line.
func TestValidOverridesLogNothing(t *testing.T) {
	var logs servicetest.Buffer
	l := newTestLimiter(t, true, Options{Default: 60, Burst: 5, TokensPerMinute: 1000,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c := rawClient(t, l.o.RedisAddr)
	redisDo(t, c, "HSET", l.o.KeyPrefix+"{acme}:cfg", "rpm", "120", "burst", "7", "tpm", "0")
	redisDo(t, c, "HSET", l.o.KeyPrefix+"{beta}:cfg", "rpm", "-1")
	ctx := context.Background()
	if d := l.Take(ctx, "acme", ""); d.Limit != 7 {
		t.Fatalf("acme %+v: want the override's burst 7", d)
	}
	if d := l.Take(ctx, "beta", ""); !d.Allowed || d.Limit != 0 {
		t.Fatalf("beta %+v: want admitted without a request bucket", d)
	}
	if logs.String() != "" {
		t.Fatalf("valid overrides logged:\n%s", logs.String())
	}
}
