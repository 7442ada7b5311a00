package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bareConfig is a relay of one route on host:port, storing to spool files
// under t's temporary directory; extra is appended to the file.
func bareConfig(t *testing.T, port int, extra string) *Config {
	t.Helper()
	cfg, err := Parse([]byte(`
server:
  host: 127.0.0.1
  port: ` + strconv.Itoa(port) + `
  shutdown_grace: 5s
routes:
  - name: a
    path: /a
    upstream: http://127.0.0.1:1
storage:
  spool_dir: ` + t.TempDir() + `
log:
  level: error
` + extra))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newBareApp(t *testing.T, cfg *Config) *App {
	t.Helper()
	a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// shutdownApp shuts a down within generous bounds.
func shutdownApp(t *testing.T, a *App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestShutdownBeforeServe: a Serve called after Shutdown began returns
// at once, and closes its listener.
func TestShutdownBeforeServe(t *testing.T) {
	a := newBareApp(t, bareConfig(t, 8080, ""))
	shutdownApp(t, a)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ln) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		_ = ln.Close()
		t.Fatal("Serve after Shutdown did not return")
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second); err == nil {
		c.Close()
		t.Error("the listener given to Serve after Shutdown still accepts")
	}
}

// TestServeShutdownAtOnce: a relay stopped as soon as it was started
// (Shutdown racing Serve's start, before fasthttp registered the
// listener) has Serve return, every time.
func TestServeShutdownAtOnce(t *testing.T) {
	const runs = 30
	hung := 0
	for i := range runs {
		a := newBareApp(t, bareConfig(t, 8080, ""))
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- a.Serve(ln) }()
		if i%2 == 1 {
			// Let Serve get further before Shutdown on every other run.
			time.Sleep(time.Duration(i%5) * time.Millisecond)
		}
		shutdownApp(t, a)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run %d: Serve: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			hung++
			_ = ln.Close() // let it go
			<-done
		}
	}
	if hung > 0 {
		t.Errorf("Serve did not return after Shutdown in %d of %d runs", hung, runs)
	}
}

// TestListenErrorsNameTheField: a port taken is reported by the setting
// that chose it.
func TestListenErrorsNameTheField(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)

	a := newBareApp(t, bareConfig(t, port, ""))
	defer shutdownApp(t, a)
	ln, err := a.Listen()
	if err == nil {
		ln.Close()
		t.Fatal("listened on a taken port")
	}
	if want := "server.port=" + p + ": listen tcp " + addr + ": "; !strings.HasPrefix(err.Error(), want) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen: %v, want %q... address in use", err, want)
	}

	_, err = New(bareConfig(t, port+1, "metrics:\n  addr: "+addr+"\n"), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if want := "metrics.addr=" + addr + ": listen tcp " + addr + ": "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("New with metrics.addr taken: %v, want %q...", err, want)
	}
}
