package quota

import (
	"context"
	"syscall"
	"testing"
	"time"
)

func TestDeadlinesBound(t *testing.T) {
	const timeout = 500 * time.Millisecond
	var d deadlines
	d.init(timeout)
	defer d.stop()

	t.Run("shared for a background parent", func(t *testing.T) {
		start := time.Now()
		ctx, cancel := d.bound(context.Background())
		end := time.Now()
		defer cancel()
		dl, ok := ctx.Deadline()
		if !ok {
			t.Fatal("no deadline")
		}
		// At most Timeout away, and never less than Timeout minus a slice.
		if dl.After(end.Add(timeout)) || dl.Before(start.Add(timeout-timeout/deadlineSlices)) {
			t.Fatalf("deadline %v after the call, want within [%v, %v]", dl.Sub(start), timeout-timeout/deadlineSlices, timeout)
		}
		again, cancel2 := d.bound(context.Background())
		defer cancel2()
		if again != ctx && time.Since(start) < timeout/deadlineSlices/2 {
			t.Fatal("a call within the same slice got a context of its own")
		}
		<-ctx.Done()
		if ctx.Err() != context.DeadlineExceeded {
			t.Fatalf("err %v, want deadline exceeded", ctx.Err())
		}
	})

	t.Run("own for a cancellable parent", func(t *testing.T) {
		parent, cancelParent := context.WithCancel(context.Background())
		ctx, cancel := d.bound(parent)
		defer cancel()
		if _, ok := ctx.Deadline(); !ok {
			t.Fatal("no deadline")
		}
		cancelParent()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("cancelling the caller's context did not end the call's")
		}
	})
}

// TestStalledRedisFallsBackAfterTimeout: a Redis that stops answering
// (SIGSTOP: the connection stays open, nothing comes back) costs a decision
// Timeout, not less (the shared deadline never cuts a call short by more
// than one slice) and not much more, and the next one is decided by the
// fallback without waiting.
func TestStalledRedisFallsBackAfterTimeout(t *testing.T) {
	srv := startOwnRedis(t)
	const timeout = 300 * time.Millisecond
	l, err := New(Options{RedisAddr: srv.addr, Default: 600, Timeout: timeout, ProbeInterval: 50 * time.Millisecond,
		Lease: 1}) // every decision asks Redis
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	if d := l.Take(ctx, "acme", ""); d.Source != SourceRedis {
		t.Fatalf("before the stall: %+v", d)
	}
	srv.Signal(syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			srv.Signal(syscall.SIGCONT)
		}
	}()
	start := time.Now()
	d := l.Take(ctx, "acme", "")
	took := time.Since(start)
	if d.Source != SourceLocal || !d.Allowed {
		t.Fatalf("stalled Redis: %+v, want admitted by the local fallback", d)
	}
	if took < timeout-timeout/deadlineSlices || took > timeout+5*time.Second {
		t.Fatalf("the decision that met the stall took %v, want about Timeout (%v)", took, timeout)
	}
	if d := l.Take(ctx, "acme", ""); d.Source != SourceLocal {
		t.Fatalf("next decision during the stall: %+v, want local", d)
	}
	srv.Signal(syscall.SIGCONT)
	stopped = false
	deadline := time.Now().Add(20 * time.Second)
	for l.Take(ctx, "acme", "").Source != SourceRedis {
		if time.Now().After(deadline) {
			t.Fatalf("not back on Redis 20s after SIGCONT: %+v", l.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := l.Stats(); st.ToFallback != 1 || st.ToRedis != 1 {
		t.Fatalf("stats %+v: want one switch each way", st)
	}
}
