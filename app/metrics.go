package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/stream-relay/stream-relay/telemetry"
)

// metricsContentType is the Prometheus text exposition format.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// metricsHandler serves GET /metrics on the relay's own Fiber app.
func metricsHandler(m *telemetry.Metrics) fiber.Handler {
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderContentType, metricsContentType)
		m.WritePrometheus(c.Response().BodyWriter())
		return nil
	}
}

// serveAdmin serves GET /metrics on addr (metrics.addr), apart from relayed
// traffic, until stop is called. net/http rather than a second Fiber app: the
// admin port sees one scrape every few seconds, not the relay's load.
// With pprof set it also serves net/http/pprof under /debug/pprof/, for
// profiling under load; never on the relay's public port.
func serveAdmin(addr string, m *telemetry.Metrics, pprof bool, ready func() bool) (stop func(context.Context) error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics.addr=%s: %w", addr, err)
	}
	return serveAdminOn(ln, m, pprof, ready), nil
}

// serveAdminOn is serveAdmin on an open listener, which it closes on stop.
// Besides /metrics it answers /healthz and /readyz (ready reports whether
// the relay takes traffic): the admin listener stays open through the
// drain, after the relay's own port stopped accepting connections.
func serveAdminOn(ln net.Listener, m *telemetry.Metrics, pprof bool, ready func() bool) (stop func(context.Context) error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, "draining\n")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	if pprof {
		mux.HandleFunc("/debug/pprof/", httppprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	}
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", metricsContentType)
		m.WritePrometheus(w)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 120 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	return func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		if serveErr := <-done; !errors.Is(serveErr, http.ErrServerClosed) {
			err = errors.Join(err, serveErr)
		}
		return err
	}
}
