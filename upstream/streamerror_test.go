package upstream

import (
	"bufio"
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/record"
)

// TestStreamErrorRecord: an error event in a 200 stream types the record
// upstream_stream_error, cut between two reads or not, and keeps that
// type when the upstream then breaks the stream (the event came first);
// a stream that only says "error" in its content and a raw route get
// none, and a break with no error event stays upstream_reset.
func TestStreamErrorRecord(t *testing.T) {
	content := []byte(`data: {"choices":[{"delta":{"content":"error"}}]}` + "\n\n")
	errEvent := []byte(`data: {"error":{"message":"overloaded","type":"server_error"}}` + "\n\n")
	for _, tt := range []struct {
		name   string
		kind   record.Kind
		chunks [][]byte
		cut    bool // the body ends without its last chunk: the upstream broke it
		want   string
	}{
		{"error", record.KindSSE, [][]byte{content, errEvent}, false, record.ErrUpstreamStreamError},
		{"error-split", record.KindSSE, [][]byte{content, errEvent[:9], errEvent[9:]}, false, record.ErrUpstreamStreamError},
		{"error-then-reset", record.KindSSE, [][]byte{content, errEvent}, true, record.ErrUpstreamStreamError},
		{"content-only", record.KindSSE, [][]byte{content, content}, false, ""},
		{"reset-only", record.KindSSE, [][]byte{content, content}, true, record.ErrUpstreamReset},
		{"raw", record.KindRaw, [][]byte{content, errEvent}, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b []byte
			for _, c := range tt.chunks {
				b = append(b, []byte(hexLen(len(c))+"\r\n")...)
				b = append(b, c...)
				b = append(b, "\r\n"...)
			}
			if !tt.cut {
				b = append(b, "0\r\n\r\n"...)
			}
			src := &chunkedSource{data: b}
			src.rd.Reset(b)
			s := testStream(tt.kind, true, src)
			s.rec.Status = 200
			var got string
			s.finish = func(rec *record.Record) { got = rec.ErrorType }
			_, _ = s.WriteTo(flushWriter{bufio.NewWriter(io.Discard)})
			if !bytes.Contains(s.rec.Chunks.Data, tt.chunks[len(tt.chunks)-1]) {
				t.Fatalf("last chunk not relayed: %q", s.rec.Chunks.Data)
			}
			_ = s.CloseWithError(nil)
			if got != tt.want {
				t.Fatalf("error_type %q, want %q", got, tt.want)
			}
		})
	}
}

func hexLen(n int) string {
	const digits = "0123456789abcdef"
	var b []byte
	for {
		b = append([]byte{digits[n%16]}, b...)
		n /= 16
		if n == 0 {
			return string(b)
		}
	}
}

// TestFailLate: an attempt counted a success at its first body byte whose
// stream then carried an error event counts as a failure after all: the
// failures in a row its success reset count again, with it (so that such
// streams in a row eject the target), and a probe that turns out so ejects
// its target again for twice the cool-down.
func TestFailLate(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	r.Health.Cooldown = 50 * time.Millisecond
	a := r.pool.targets[0]
	a.report(outcomeFailed, pickedNow(a, false), 0, &r.Health, quiet, "test")
	c := a.succeed(pickedNow(a, false), quiet)
	if c.fails != 1 || a.health.fails.Load() != 0 {
		t.Fatalf("success cleared %+v, fails now %d: want 1 cleared, 0", c, a.health.fails.Load())
	}
	a.failLate(c, &r.Health, quiet, "test")
	if n := a.health.fails.Load(); n != 2 || !a.health.healthy() {
		t.Fatalf("after a late failure: fails %d healthy %v, want 2 and healthy", n, a.health.healthy())
	}
	a.failLate(a.succeed(pickedNow(a, false), quiet), &r.Health, quiet, "test")
	if a.health.healthy() || a.health.ejections.Load() != 1 {
		t.Fatalf("3 failures in a row (max_fails 3): healthy %v, ejections %d", a.health.healthy(), a.health.ejections.Load())
	}
	// The cool-down is over: a's probe.
	time.Sleep(60 * time.Millisecond)
	for i := 0; pickOne(r.pool, 0) != a; i++ {
		if i == 10 {
			t.Fatal("a not picked after its cool-down")
		}
	}
	c = a.succeed(pickedNow(a, false), quiet) // the probe's first byte: back
	if !a.health.healthy() || c.cooldown != 50*time.Millisecond {
		t.Fatalf("probe success: healthy %v, cleared %+v", a.health.healthy(), c)
	}
	a.failLate(c, &r.Health, quiet, "test")
	if a.health.healthy() || a.health.cooldown != 100*time.Millisecond || a.health.ejections.Load() != 2 {
		t.Fatalf("probe failed late: healthy %v, cool-down %v, ejections %d; want ejected for 100ms, 2", a.health.healthy(), a.health.cooldown, a.health.ejections.Load())
	}
}

// TestFailLateAfterAnotherSuccess: a stream found failed after another
// answer of its target succeeded is one failure in a row, not the streak
// its own success had cleared, and a probe that brought the target back
// does not re-eject it once another answer succeeded since.
func TestFailLateAfterAnotherSuccess(t *testing.T) {
	r := poolRoute(t, Target{Name: "a"}, Target{Name: "b"})
	r.Health.Cooldown = 50 * time.Millisecond
	a := r.pool.targets[0]
	a.report(outcomeFailed, pickedNow(a, false), 0, &r.Health, quiet, "test")
	a.report(outcomeFailed, pickedNow(a, false), 0, &r.Health, quiet, "test")
	c := a.succeed(pickedNow(a, false), quiet) // stream A's first byte: clears 2
	a.succeed(pickedNow(a, false), quiet)      // another answer succeeds
	a.failLate(c, &r.Health, quiet, "test")
	if n := a.health.fails.Load(); n != 1 || !a.health.healthy() || a.health.ejections.Load() != 0 {
		t.Fatalf("late failure after another success: fails %d healthy %v ejections %d; want 1, healthy, 0",
			n, a.health.healthy(), a.health.ejections.Load())
	}

	// Ejected, then its probe succeeds, then another answer does: the
	// probe's stream failing late is one failure.
	a.report(outcomeFailed, pickedNow(a, false), 0, &r.Health, quiet, "test")
	a.report(outcomeFailed, pickedNow(a, false), 0, &r.Health, quiet, "test")
	if a.health.healthy() {
		t.Fatal("3 failures in a row: still healthy")
	}
	time.Sleep(60 * time.Millisecond)
	for i := 0; pickOne(r.pool, 0) != a; i++ {
		if i == 10 {
			t.Fatal("a not picked after its cool-down")
		}
	}
	probe := a.succeed(pickedNow(a, false), quiet)
	a.succeed(pickedNow(a, false), quiet)
	a.failLate(probe, &r.Health, quiet, "test")
	if !a.health.healthy() || a.health.ejections.Load() != 1 {
		t.Fatalf("probe failed late after another success: healthy %v ejections %d; want healthy, 1", a.health.healthy(), a.health.ejections.Load())
	}
}
