package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/stream-relay/stream-relay/chlog"
	"github.com/stream-relay/stream-relay/handlers"
	"github.com/stream-relay/stream-relay/internal/socket"
	"github.com/stream-relay/stream-relay/quota"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/telemetry"
	"github.com/stream-relay/stream-relay/upstream"
)

// App is a configured relay, ready to serve.
type App struct {
	cfg     *Config
	log     *slog.Logger
	fiber   *fiber.App
	relay   *handlers.Relay
	wd      *upstream.Watchdog
	clients *upstream.Clients
	store   *chlog.Writer
	limiter *quota.Limiter
	metrics *telemetry.Metrics
	// stopAdmin stops the separate metrics listener; nil unless metrics.addr is set.
	stopAdmin func(context.Context) error
	rl        reloadState     // see Reload
	limiters  limiterTotals   // the limiters' counters since start (limitertotals.go)
	served    servedListeners // the listeners Serve was given (serve.go)
	edges     edgeSet         // the open client connections (edgeset.go)
	// certs is the listener's certificate source (certs.go); nil without
	// TLS. Reload reloads it.
	certs atomic.Pointer[certSource]
}

// New builds the relay from cfg. It starts the background parts (watchdog,
// ClickHouse writer, limiter) but does not listen yet. Extra sinks receive
// every finished record after the ClickHouse logger (tests, embedders).
func New(cfg *Config, log *slog.Logger, extra ...handlers.Sink) (*App, error) {
	a := &App{cfg: cfg, clients: upstream.NewClients()}
	log = a.reloadable(log)
	a.log, a.rl.cfg = log, cfg
	routes, err := a.routes()
	if err != nil {
		return nil, err
	}
	keys, err := a.keys()
	if err != nil {
		return nil, err
	}
	routeNames := make([]string, len(routes))
	for i, r := range routes {
		routeNames[i] = r.Name
	}
	a.metrics = telemetry.New(routeNames)
	a.store, err = chlog.New(chlog.Options{
		URL:            cfg.Storage.ClickHouse.URL,
		URLs:           cfg.Storage.ClickHouse.URLs,
		Cluster:        cfg.Storage.ClickHouse.Cluster,
		Database:       cfg.Storage.ClickHouse.Database,
		Table:          cfg.Storage.ClickHouse.Table,
		User:           cfg.Storage.ClickHouse.User,
		Password:       cfg.Storage.ClickHouse.Password,
		BatchRows:      cfg.Storage.ClickHouse.BatchRows,
		BatchBytes:     cfg.Storage.ClickHouse.BatchBytes,
		FlushInterval:  cfg.Storage.ClickHouse.FlushInterval,
		InsertTimeout:  cfg.Storage.ClickHouse.InsertTimeout,
		SpoolDir:       cfg.Storage.SpoolDir,
		SpoolMaxBytes:  cfg.Storage.ClickHouse.SpoolMaxBytes,
		Compression:    cfg.Storage.ClickHouse.Compression,
		Durability:     cfg.Storage.ClickHouse.Durability,
		TTLDays:        cfg.Storage.ClickHouse.TTLDays,
		NoMigrate:      cfg.Storage.ClickHouse.Migrate != nil && !*cfg.Storage.ClickHouse.Migrate,
		MaxBufferBytes: cfg.Storage.MaxBufferBytes,
		OnOverload:     cfg.Storage.OnOverload,
		Logger:         log,
		OnInsert:       a.metrics.ObserveInsert,
	})
	if err != nil {
		return nil, err
	}
	a.metrics.SetStorageStats(a.store.Stats)
	a.metrics.SetStorageNodeErrors(a.store.NodeErrors)
	var limiter handlers.Limiter
	if !cfg.RateLimit.Disabled {
		a.limiter, err = quota.New(a.quotaOptions())
		if err != nil {
			_ = a.store.Close(context.Background())
			return nil, err
		}
		limiter = a.limiter
		a.limiters.add(a.limiter)
		a.metrics.SetLimiterStats(a.limiters.stats)
		qo := a.quotaOptions()
		a.rl.quota = &qo
	}
	a.wd = upstream.NewWatchdog(upstream.WatchdogOptions{})
	proxies, _ := handlers.ParseProxies(cfg.Server.TrustedProxies) // validated at load (load.go)
	ho := handlers.Options{
		Routes:  upstream.NewTable(routes),
		Keys:    keys,
		Limiter: limiter,
		// The storage last: the last sink may take the request body (record.TakeRequestBody).
		Sinks:          append(append([]handlers.Sink{a.metrics}, extra...), a.store),
		Admission:      a.store, // an answered request always has its row
		Observer:       a.metrics,
		Watchdog:       a.wd,
		Instance:       cfg.Server.Instance,
		SmallStacks:    cfg.Server.SmallStacks,
		TrustedProxies: proxies,
		Logger:         log,
		BodyLimit:      a.bodyLimit(routes),
		OwnPaths:       a.ownPaths(),
	}
	if cfg.Server.Detached() {
		// a.fiber is made below, before the relay serves anything.
		ho.ServeConn = func(c net.Conn) error { return a.fiber.Server().ServeConn(c) }
		ho.IdleWait = cfg.Server.IdleWait
		ho.DetachAbove = *cfg.Server.DetachAbove
	}
	a.relay, err = handlers.New(ho)
	if err != nil {
		_ = a.closeBackground(context.Background())
		return nil, err
	}
	a.fiber = a.newFiber(routes)
	a.metrics.SetUpstreams(a.upstreamStatus)
	if cfg.Metrics.Addr != "" {
		if a.stopAdmin, err = serveAdmin(cfg.Metrics.Addr, a.metrics, cfg.Metrics.PProf, a.relay.Ready); err != nil {
			_ = a.closeBackground(context.Background())
			return nil, err
		}
	}
	a.logStart(routes)
	return a, nil
}

// bodyLimit is the server's limit on a request body: the largest of
// server.max_body_bytes and the routes' own (a route's is checked when the
// request is served).
func (a *App) bodyLimit(routes []*upstream.Route) int64 {
	limit := a.cfg.Server.MaxBodyBytes
	for _, r := range routes {
		limit = max(limit, r.MaxBodyBytes)
	}
	return limit
}

func (a *App) newFiber(routes []*upstream.Route) *fiber.App {
	f := fiber.New(fiber.Config{
		DisableStartupMessage: true,
		BodyLimit:             int(a.bodyLimit(routes)),
		ReadTimeout:           a.cfg.Server.ReadTimeout,
		IdleTimeout:           a.cfg.Server.IdleTimeout,
		// A client must take each of the relay's own answers (errors,
		// refusals, /healthz, a body that came whole) within the idle
		// timeout: one that reads nothing, pipelining requests, held a
		// connection, its goroutine and megabytes of kernel send buffer
		// for as long as it stayed connected. Streams set their own
		// deadlines (upstream/deadline.go).
		WriteTimeout:   a.cfg.Server.IdleTimeout,
		ReadBufferSize: 8 << 10,
		// A stream's response is written mostly straight to the connection
		// (upstream.Stream.WriteTo): the buffer carries the head with the
		// first chunk (a burst of events), the last chunk with the
		// terminating one, and small answers whole; between its first and
		// last chunk a stream holds none (upstream/parkedwriter.go). With
		// 4 KiB, a 20-event answer that came at once, with its head and
		// the rate-limit headers, took two writes (2.99 against 2.15 per
		// stream, strace, scenario 4's production shape); with 2 KiB even
		// more.
		WriteBufferSize: 8 << 10,
		// The request's read buffer goes back to the pool once the request
		// is read, the write buffer after each response: an open stream
		// and an idle keep-alive connection hold neither.
		ReduceMemoryUsage:         true,
		DisableDefaultContentType: true,
		// A multipart body (an audio upload to /v1/audio/transcriptions)
		// goes upstream and into the row as the client sent it: parsed on
		// arrival, fasthttp dropped the raw body and rebuilt it from the
		// form (the fields first, the files last; the row's body was
		// empty).
		DisablePreParseMultipartForm: true,
		ErrorHandler:                 a.relay.ServerError,
		Network:                      "tcp",
	})
	// Before Fiber: it answers an unknown method itself, in plain text.
	srv := f.Server()
	// A detached stream's connection outlives its hijack handler
	// (handlers/detach.go); WebSocket sessions close theirs (handlers/ws.go).
	srv.KeepHijackedConns = true
	// A detached stream whose hijack handler never ran is ended when its
	// connection closes (handlers/detach.go).
	srv.ConnState = a.edges.connState
	if a.cfg.Server.Detached() {
		// The server's workers then serve a connection's first request
		// only (a detached stream's goroutines serve the next ones): a
		// burst of new connections leaves as many idle workers, each with
		// a stack, which go after this long (fasthttp's default: 10 s).
		srv.MaxIdleWorkerDuration = time.Second
	}
	// A body over 64 KiB is read of a request with a valid relay key only
	// (fasthttp allocates its declared size at once).
	srv.HeaderReceived = a.relay.HeaderReceived
	srv.Handler = a.relay.CheckRequest(srv.Handler)
	// "Expect: 100-continue" is answered with a refusal when the relay
	// would refuse the request whatever its body (handlers/expect.go).
	srv.ExpectHandler = freshWriteDeadline(a.relay.ExpectContinue, a.cfg.Server.IdleTimeout)
	// A header block fasthttp refused (a control character) is answered
	// and logged as a request (handlers/readerror.go).
	srv.ErrorHandler = freshErrorDeadline(a.relay.ReadError(srv.ErrorHandler), a.cfg.Server.IdleTimeout)
	f.Use(a.relay.CheckFraming) // before every route: /healthz too can be smuggled into
	for _, r := range a.ownRoutes() {
		f.Get(r.path, r.handler)
	}
	f.Use(a.relay.Handle)
	return f
}

// warnUnsetKeys logs the routes and targets whose provider key variable is
// unset, at start and on each reload.
func (a *App) warnUnsetKeys(routes []*upstream.Route) {
	for _, r := range routes {
		if !r.Configured() {
			envs := []string{}
			for _, t := range r.UnsetTargets() {
				envs = append(envs, t.KeyEnv)
			}
			if len(envs) == 0 {
				envs = append(envs, r.KeyEnv)
			}
			a.log.Warn("provider key not set: requests on this route will fail with 502 upstream_config",
				"route", r.Name, "auth_env", strings.Join(envs, ","))
			continue
		}
		for _, t := range r.UnsetTargets() {
			a.log.Warn("provider key not set: this target of the route is never picked",
				"route", r.Name, "target", t.Target, "auth_env", t.KeyEnv)
		}
	}
}

// keyFromEnv returns the provider key in the environment variable env,
// without the white space around it: a key read from a secret file often
// keeps the file's last line feed, which went upstream as a trailing space
// ("Bearer sk-... "), and the provider refused the key.
func keyFromEnv(env string) string { return strings.TrimSpace(os.Getenv(env)) }

// ownRoute is a path the relay's server answers itself, for GET (and so
// HEAD), in front of the routes, with its handler.
type ownRoute struct {
	path    string
	handler fiber.Handler
}

// ownRoutes are the relay's own paths: /healthz, /readyz, and /metrics
// unless it is on its own listener (metrics.addr).
func (a *App) ownRoutes() []ownRoute {
	own := []ownRoute{{"/healthz", a.relay.Healthz}, {"/readyz", a.relay.Readyz}}
	if a.cfg.Metrics.Addr == "" {
		own = append(own, ownRoute{"/metrics", metricsHandler(a.metrics)})
	}
	return own
}

// ownPaths are ownRoutes' paths: handlers.Options.OwnPaths has them, so
// that a request for one with Expect: 100-continue is let through.
func (a *App) ownPaths() []string {
	var paths []string
	for _, r := range a.ownRoutes() {
		paths = append(paths, r.path)
	}
	return paths
}

func (a *App) routes() ([]*upstream.Route, error) { return a.routesOf(a.cfg) }

// routesOf builds the routes of cfg (its routes section; the server section
// is a.cfg's: a reload does not change it).
func (a *App) routesOf(cfg *Config) ([]*upstream.Route, error) {
	var out []*upstream.Route
	for _, rc := range cfg.Routes {
		kind := record.KindSSE
		switch rc.Kind {
		case "raw":
			kind = record.KindRaw
		case "ws":
			kind = record.KindWS
		}
		key := ""
		if rc.AuthEnv != "" {
			key = keyFromEnv(rc.AuthEnv)
		}
		r, err := upstream.NewRoute(upstream.Options{
			Name:               rc.Name,
			Path:               rc.Path,
			Upstream:           rc.Upstream,
			Kind:               kind,
			ProviderKey:        key,
			KeyEnv:             rc.AuthEnv,
			AuthHeader:         rc.AuthHeader,
			AuthQuery:          rc.AuthQuery,
			Headers:            rc.Headers,
			SetHeaders:         rc.SetHeaders,
			ConnectTimeout:     rc.ConnectTimeout,
			FirstByteTimeout:   rc.FirstByteTimeout,
			IdleTimeout:        rc.IdleTimeout,
			Timeout:            a.cfg.Server.Timeout,
			MaxConns:           rc.MaxConns,
			ReadBufferBytes:    rc.ReadBufferBytes,
			TLSSkipVerify:      rc.TLSSkipVerify,
			Capture:            rc.Capture == "full",
			MaxCaptureBytes:    rc.MaxCaptureBytes,
			MaxBodyBytes:       rc.MaxBodyBytes,
			InjectIncludeUsage: rc.InjectIncludeUsage,
			Methods:            rc.Methods,
			UnderscoreHeaders:  a.cfg.Server.UnderscoresInHeaders,
			Targets:            rc.targets(),
			Failover:           upstream.FailoverOptions{On: rc.Failover.On, MaxAttempts: rc.Failover.MaxAttempts},
			Health:             upstream.HealthOptions{MaxFails: rc.Health.MaxFails, Cooldown: rc.Health.Cooldown, MaxCooldown: rc.Health.MaxCooldown},
			Logger:             a.log,
		}, a.clients)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (a *App) keys() (*handlers.Keys, error) { return keysOf(a.cfg) }

func keysOf(cfg *Config) (*handlers.Keys, error) {
	opts := make([]handlers.KeyOptions, 0, len(cfg.Auth.Keys))
	for _, k := range cfg.Auth.Keys {
		opts = append(opts, handlers.KeyOptions{Key: k.Key, KeySHA256: k.KeySHA256, Tenant: k.Tenant, Tenants: k.Tenants})
	}
	return handlers.NewKeys(opts)
}

func (a *App) quotaOptions() quota.Options { return a.quotaOptionsOf(a.cfg) }

// quotaOptionsOf is the limiter of cfg's rate_limit and keys (storage is
// a.cfg's: a reload does not change it).
func (a *App) quotaOptionsOf(cfg *Config) quota.Options {
	rl := cfg.RateLimit
	o := quota.Options{
		RedisAddr:       a.cfg.Storage.Redis.Addr,
		RedisPassword:   a.cfg.Storage.Redis.Password,
		Default:         rl.Default,
		Burst:           rl.Burst,
		Tenants:         rl.Tenants,
		TokensPerMinute: rl.TokensPerMinute,
		TenantTokens:    rl.TenantTokens,
		OnRedisError:    rl.OnRedisError,
		Timeout:         rl.RedisTimeout,
		Lease:           rl.Lease,
		LeaseTTL:        rl.LeaseTTL,
		RenewBelow:      rl.LeaseRenewBelow,
		LeaseMax:        rl.LeaseMax,
		Logger:          a.log,
	}
	keys, _ := keysOf(cfg)
	for i, k := range cfg.Auth.Keys {
		if k.RateLimit > 0 {
			if o.Keys == nil {
				o.Keys = map[string]int{}
			}
			o.Keys[keys.IDAt(i)] = k.RateLimit
		}
	}
	return o
}

func (a *App) logStart(routes []*upstream.Route) {
	a.warnUnsetKeys(routes)
	storage := a.cfg.storageSummary()
	limits := "redis " + a.cfg.Storage.Redis.Addr
	switch {
	case a.cfg.RateLimit.Disabled:
		limits = "off"
	case a.cfg.Storage.Redis.Addr == "":
		limits = "in process (no Redis configured)"
	}
	if ch := a.cfg.Storage.ClickHouse; ch.Addr != "" && ch.URL != ClickHouseURLFromAddr(ch.Addr) {
		a.log.Info("storage.clickhouse.addr is not used: storage.clickhouse.url is set and wins", "url", shownURL(ch.URL), "addr", shownURL(ch.Addr))
	}
	a.log.Info("stream-relay configured", "routes", len(routes), "keys", len(a.cfg.Auth.Keys),
		"storage", storage, "rate_limits", limits, "instance", a.cfg.Server.Instance)
}

// Addr returns the configured listen address.
func (a *App) Addr() string {
	return net.JoinHostPort(a.cfg.Server.Host, strconv.Itoa(a.cfg.Server.Port))
}

// Listen opens the configured listener (TLS when configured).
func (a *App) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", a.Addr())
	if err != nil {
		// err names the address: "listen tcp HOST:PORT: bind: ...". A
		// port taken or refused is the port's; a host that does not
		// resolve or is not this machine's is the host's.
		field := fmt.Sprintf("server.port=%d", a.cfg.Server.Port)
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) || errors.Is(err, syscall.EADDRNOTAVAIL) {
			field = fmt.Sprintf("server.host=%s", a.cfg.Server.Host)
		}
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	ln = socket.Listener{Listener: ln} // beneath TLS too
	if a.cfg.Server.TLSCert != "" {
		certs, err := newCertSource(a.cfg.Server.TLSCert, a.cfg.Server.TLSKey, a.log)
		if err != nil {
			_ = ln.Close()
			return nil, err
		}
		a.certs.Store(certs)
		a.metrics.SetCertExpiry(certs.notAfter)
		ln = tls.NewListener(ln, certs.config())
	}
	return ln, nil
}

// Serve serves on ln until Shutdown, and closes ln. Called after Shutdown
// began, it returns nil at once.
func (a *App) Serve(ln net.Listener) error {
	ol := a.served.add(ln)
	if ol == nil {
		return nil
	}
	a.log.Info("stream-relay listening", "addr", ln.Addr().String())
	return a.fiber.Listener(edgeListener{Listener: ol, retry: &acceptRetry{log: a.log, count: a.metrics.AcceptFailed}, set: &a.edges})
}

// Shutdown stops taking requests, lets in-flight streams finish within the
// grace period (then cuts them), flushes the ClickHouse logger and closes
// everything. It returns once all is done or ctx ends.
func (a *App) Shutdown(ctx context.Context) error {
	a.relay.Drain()
	// The server's own shutdown only once the streams in flight ended:
	// from it on fasthttp closes a kept-alive connection after its answer
	// and every idle one at once, so a request sent on one during the
	// drain (the next after a stream that ended in it, or on one idle at
	// the signal) met a closed connection: no status, no row, and a POST
	// no client can safely send again. Until then the gate answers it
	// 503 shutting_down, saying close (handlers/gate.go). With none in
	// flight, at once, as before.
	busy := a.relay.Active() > 0
	if !busy {
		a.relay.CloseIdle()
	}
	grace, cancel := context.WithTimeout(ctx, a.cfg.Server.ShutdownGrace)
	defer cancel()
	a.log.Info("shutting down: draining in-flight streams", "active", a.relay.Active(), "grace", a.cfg.Server.ShutdownGrace)
	shut := make(chan error, 1)
	// The listeners first: fasthttp closes only those its Serve has
	// registered, and a Serve that began but had not registered its
	// listener yet would then accept until the process ends.
	a.served.close()
	if !busy {
		go func() { shut <- a.fiber.ShutdownWithContext(grace) }()
	}
	var errs []error
	if err := a.relay.Wait(grace); err != nil {
		a.cutOpen(ctx)
	} else if busy {
		// The client of the last stream to end sends its next request
		// now: it gets its 503 rather than the close.
		linger := time.NewTimer(drainLinger)
		select {
		case <-linger.C:
		case <-grace.Done():
		}
		linger.Stop()
	}
	if busy {
		a.relay.CloseIdle()
		go func() { shut <- a.fiber.ShutdownWithContext(grace) }()
	}
	if err := <-shut; err != nil && !errors.Is(err, context.DeadlineExceeded) {
		errs = append(errs, err)
	}

	// A request whose upload was under way when the drain began is served
	// (handlers' gate), and reaches the relay only once its body is whole:
	// Wait may have found none in flight before it did. The server's
	// shutdown waited for its connection within the grace period; what is
	// still open now is cut before the storage closes.
	if a.relay.Active() > 0 {
		// The server counts no hijacked connection (a detached stream, an
		// HTTP/1.0 answer): what is open now gets what is left of the
		// grace period before the cut.
		if err := a.relay.Wait(grace); err != nil {
			a.cutOpen(ctx)
		}
	}
	// Past the grace period: a request still arriving is refused, begun
	// before the drain or not, and an upload the server's shutdown left
	// unfinished is answered 503 shutting_down, with its row, now, instead
	// of dying with the process (edgeset.go).
	if n := a.relay.EndGrace() + a.edges.cutUploads(); n > 0 {
		a.log.Warn("grace period over: requests whose upload had not ended are answered 503", "requests", n)
		a.edges.waitAnswered(ctx, 2*time.Second, a.relay.UploadsUnderWay)
	}
	// The storage's error too (rows it could not keep at exit): the
	// process then exits with a failure, which a supervisor sees.
	errs = append(errs, a.closeBackground(ctx))
	a.log.Info("shutdown complete")
	return errors.Join(errs...)
}

// drainLinger is how long the server goes on reading kept-alive
// connections after the last stream of a drain ended (see Shutdown).
const drainLinger = 500 * time.Millisecond

// cutOpen ends the relayed requests still open when the grace period is
// over (503 shutting_down for one not answered yet, a cut stream for the
// others), waiting up to 5 s for them to end.
func (a *App) cutOpen(ctx context.Context) {
	a.log.Warn("grace period over: cutting streams still open", "active", a.relay.Active())
	// Again and again: a request that was dialing or between its
	// answer's head and its stream when the first cut came is not
	// the watchdog's yet, and would start streaming after it.
	// Connects too: one in progress would outlast the storage.
	a.clients.AbortDials()
	wait, cancelWait := context.WithTimeout(ctx, 5*time.Second)
	defer cancelWait()
	for a.relay.Active() > 0 && wait.Err() == nil {
		a.wd.AbortAll(record.ErrShuttingDown)
		step, cancelStep := context.WithTimeout(wait, 100*time.Millisecond)
		_ = a.relay.Wait(step)
		cancelStep()
	}
}

// closeBackground closes what New started and returns the errors of the
// storage's close (rows lost) and of the metrics listener's.
func (a *App) closeBackground(ctx context.Context) error {
	var errs []error
	if a.relay != nil {
		a.relay.Close()
	}
	if a.store != nil {
		if err := a.store.Close(ctx); err != nil {
			a.log.Error("closing the ClickHouse logger", "err", err)
			errs = append(errs, fmt.Errorf("storage: %w", err))
		}
	}
	a.closeRetired()
	if a.limiter != nil {
		a.limiter.Close()
	}
	if a.wd != nil {
		a.wd.Stop()
	}
	a.clients.CloseIdle()
	// Last: probes and scrapes see the process to its end, the storage's
	// final flush included. Its own short bound: ctx may be spent by now.
	if a.stopAdmin != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.stopAdmin(sctx); err != nil {
			a.log.Error("closing the metrics listener", "err", err)
			errs = append(errs, fmt.Errorf("metrics listener: %w", err))
		}
	}
	return errors.Join(errs...)
}
