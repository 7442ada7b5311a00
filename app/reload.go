package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/stream-relay/stream-relay/handlers"
	"github.com/stream-relay/stream-relay/quota"
	"github.com/stream-relay/stream-relay/upstream"
)

// reloadState is what Reload needs beside the running App.
type reloadState struct {
	mu      sync.Mutex     // one reload at a time
	cfg     *Config        // the configuration applied last (a.cfg at start)
	level   slog.LevelVar  // the log level a reload may change
	quota   *quota.Options // options of the running limiter; nil: none
	retired []*quota.Limiter
}

// retireDelay is how long a limiter a reload replaced stays open: requests
// that began on the old configuration may still be taking from it (a Take
// is bounded by the limiter's timeout, 50 ms by default).
const retireDelay = 10 * time.Second

// Reload re-reads the configuration file at path and the env file (KEY=VALUE
// lines; variables it set before may change, those set outside it stay) and
// applies what can change while serving: relay keys, routes and their
// upstream pools, rate limits and the log level. Requests that began before
// finish on the configuration they began with; connection pools of
// unchanged upstream hosts, and the passive health of unchanged targets,
// are kept. A file that does not load or validate changes nothing: the
// error names the field, and it is logged once. Other sections (server,
// storage, metrics) need a restart; a change there is logged and ignored.
func (a *App) Reload(path, envFile string) error {
	a.rl.mu.Lock()
	defer a.rl.mu.Unlock()
	err := a.reload(path, envFile)
	var certErr error
	if c := a.certs.Load(); c != nil {
		certErr = c.reload() // the files, whatever the config says (its server section is not reloaded)
	}
	// A certificate refused counts as a reload refused: the rotation asked
	// for did not happen (its warning says why).
	a.metrics.ConfigReloaded(err == nil && certErr == nil)
	if err != nil {
		a.log.Error("configuration reload refused: the running configuration stays", "err", err)
		a.clients.Keep(a.relay.Config().Routes.Routes()) // the refused routes' pools
	}
	return err
}

func (a *App) reload(path, envFile string) error {
	undo, envChanged, err := reloadEnvFile(envFile)
	if err != nil {
		undo()
		return err
	}
	applied := false
	defer func() {
		if !applied {
			undo()
		}
	}()
	loaded, err := Load(path)
	if err != nil {
		return err
	}
	old := a.rl.cfg
	if len(loaded.Auth.Keys) == 0 && len(old.Auth.Keys) > 0 {
		// Every request would be refused (401). More likely the file was
		// read while being rewritten in place; a relay without keys
		// starts so, it is not reloaded into it.
		return fmt.Errorf("config: auth.keys: none in the file, %d running: refused (a file read half-written? write a new file and rename it into place; to serve without keys, restart)", len(old.Auth.Keys))
	}
	next := *old
	next.Auth, next.Routes, next.RateLimit, next.Log.Level = loaded.Auth, loaded.Routes, loaded.RateLimit, loaded.Log.Level
	for i := range next.Routes {
		if r := &next.Routes[i]; r.maxBodyDefault {
			// The server section is not reloaded: a route without its
			// own limit keeps the running server.max_body_bytes (it
			// took the file's new one, applied while the log said the
			// server section was not).
			r.MaxBodyBytes = old.Server.MaxBodyBytes
		}
	}

	routes, err := a.routesOf(&next)
	if err != nil {
		return err
	}
	keys, err := keysOf(&next)
	if err != nil {
		return err
	}
	limiter, qo, err := a.reloadLimiter(&next)
	if err != nil {
		return err
	}
	cur := a.relay.Config()
	prev := map[string]*upstream.Route{}
	for _, r := range cur.Routes.Routes() {
		prev[r.Name] = r
	}
	names := make([]string, len(routes))
	for i, r := range routes {
		r.Adopt(prev[r.Name])
		names[i] = r.Name
	}
	a.metrics.AddRoutes(names)

	var hl handlers.Limiter // a nil *quota.Limiter must stay a nil interface
	if limiter != nil {
		hl = limiter
	}
	if err := a.relay.Swap(handlers.Config{Routes: upstream.NewTable(routes), Keys: keys, Limiter: hl}); err != nil {
		return err
	}
	applied = true
	a.metrics.KeepRoutes(names) // the series of removed routes go once idle
	a.clients.Keep(routes)      // the pools of hosts or settings no route has now
	a.warnUnsetKeys(routes)
	if limiter != a.limiter {
		if a.limiter != nil {
			a.retire(a.limiter)
		}
		a.limiter = limiter
		a.rl.quota = qo
		if limiter != nil {
			a.limiters.add(limiter)
			a.metrics.SetLimiterStats(a.limiters.stats)
		} else {
			a.metrics.SetLimiterStats(nil) // limits off: no closed limiter's counters
		}
	}
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(next.Log.Level))
	a.rl.level.Set(lv)
	a.rl.cfg = &next
	a.logReload(old, &next, loaded, cur.Keys, keys, envChanged)
	return nil
}

// reloadLimiter returns the limiter of next: the running one when its
// options did not change, else a new one (nil with rate limits disabled).
func (a *App) reloadLimiter(next *Config) (*quota.Limiter, *quota.Options, error) {
	if next.RateLimit.Disabled {
		return nil, nil, nil
	}
	qo := a.quotaOptionsOf(next)
	if a.limiter != nil && a.rl.quota != nil && sameQuota(*a.rl.quota, qo) {
		return a.limiter, a.rl.quota, nil
	}
	l, err := quota.New(qo)
	if err != nil {
		return nil, nil, err
	}
	l.Adopt(a.limiter) // buckets (and a fallback) carry on across the reload
	return l, &qo, nil
}

// sameQuota compares limiter options, the logger aside.
func sameQuota(x, y quota.Options) bool {
	x.Logger, y.Logger = nil, nil
	return reflect.DeepEqual(x, y)
}

// retire closes a replaced limiter once requests that took from it are
// done, and then forgets it (every reload that changes limits retires one:
// kept, each would hold its tenant table until shutdown). The caller holds
// a.rl.mu.
func (a *App) retire(l *quota.Limiter) {
	a.rl.retired = append(a.rl.retired, l)
	time.AfterFunc(retireDelay, func() {
		l.Close() // idempotent: Shutdown may close it first
		a.limiters.closed(l)
		a.rl.mu.Lock()
		a.rl.retired = slices.DeleteFunc(a.rl.retired, func(x *quota.Limiter) bool { return x == l })
		a.rl.mu.Unlock()
	})
}

// closeRetired closes the limiters reloads replaced (at shutdown).
func (a *App) closeRetired() {
	a.rl.mu.Lock()
	defer a.rl.mu.Unlock()
	for _, l := range a.rl.retired {
		l.Close()
	}
	a.rl.retired = nil
}

// logReload writes the one line saying what a reload changed: counts and
// names, never a key.
func (a *App) logReload(old, next, loaded *Config, oldKeys, newKeys *handlers.Keys, envChanged []string) {
	oldRoutes := map[string]RouteConfig{}
	for _, r := range old.Routes {
		oldRoutes[r.Name] = r
	}
	var added, changed, removed []string
	for _, r := range next.Routes {
		o, ok := oldRoutes[r.Name]
		switch {
		case !ok:
			added = append(added, r.Name)
		case !reflect.DeepEqual(o, r):
			changed = append(changed, r.Name)
		}
		delete(oldRoutes, r.Name)
	}
	for name := range oldRoutes {
		removed = append(removed, name)
	}
	sort.Strings(removed)
	oldIDs := keyIDs(oldKeys, len(old.Auth.Keys))
	newIDs := keyIDs(newKeys, len(next.Auth.Keys))
	keysAdded, keysRemoved := 0, 0
	for _, id := range newIDs {
		if !slices.Contains(oldIDs, id) {
			keysAdded++
		}
	}
	for _, id := range oldIDs {
		if !slices.Contains(newIDs, id) {
			keysRemoved++
		}
	}
	a.log.Info("configuration reloaded",
		"routes", len(next.Routes), "routes_added", added, "routes_changed", changed, "routes_removed", removed,
		"keys", len(next.Auth.Keys), "keys_added", keysAdded, "keys_removed", keysRemoved,
		"keys_changed", keysChanged(oldIDs, old.Auth.Keys, newIDs, next.Auth.Keys),
		"rate_limits_changed", !reflect.DeepEqual(old.RateLimit, next.RateLimit) ||
			!maps.Equal(keyLimits(oldIDs, old.Auth.Keys), keyLimits(newIDs, next.Auth.Keys)),
		"env_file_changed", envChanged,
		"log_level", next.Log.Level)
	var restart []string
	if !reflect.DeepEqual(old.Server, loaded.Server) {
		restart = append(restart, "server")
	}
	if !reflect.DeepEqual(old.Storage, loaded.Storage) {
		restart = append(restart, "storage")
	}
	if !reflect.DeepEqual(old.Metrics, loaded.Metrics) {
		restart = append(restart, "metrics")
	}
	if old.Log.Format != loaded.Log.Format {
		restart = append(restart, "log.format")
	}
	if len(restart) > 0 {
		a.log.Warn("configuration changes that need a restart were not applied", "sections", restart)
	}
	maxBody := a.cfg.Server.MaxBodyBytes
	for _, r := range old.Routes {
		maxBody = max(maxBody, r.MaxBodyBytes)
	}
	for _, r := range next.Routes {
		if r.MaxBodyBytes > maxBody {
			a.log.Warn("a route's max_body_bytes above the largest at start applies only after a restart",
				"route", r.Name, "max_body_bytes", r.MaxBodyBytes, "limit_now", maxBody)
		}
	}
}

// keyLimits maps the id of each key (ids, as keyIDs gives them for keys)
// that has a rate_limit of its own to that limit: a key's limit is a rate
// limit too (a reload that changed only one said rate_limits_changed=false).
func keyLimits(ids []string, keys []KeyConfig) map[string]int {
	m := map[string]int{}
	for i, k := range keys {
		if k.RateLimit != 0 && i < len(ids) {
			m[ids[i]] = k.RateLimit
		}
	}
	return m
}

// keysChanged counts the keys in both configurations (by ID) whose settings
// changed: a tenant, the tenants it may act for, a limit. An authorization
// change leaves a trace in the log, never the key.
func keysChanged(oldIDs []string, old []KeyConfig, newIDs []string, next []KeyConfig) int {
	n := 0
	for i, id := range newIDs {
		j := slices.Index(oldIDs, id)
		if j < 0 || j >= len(old) || i >= len(next) {
			continue
		}
		// The same key, written as it is or as its hash, its tenants in
		// another order: no change.
		a, b := old[j], next[i]
		if a.Tenant != b.Tenant || a.RateLimit != b.RateLimit || !sameSet(a.Tenants, b.Tenants) {
			n++
		}
	}
	return n
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func keyIDs(k *handlers.Keys, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = k.IDAt(i)
	}
	return out
}

// envFile remembers the variables the env file set, so that a reload may
// change them; variables set outside it always win.
type envFile struct {
	mu   sync.Mutex
	vars map[string]string
}

var envFromFile envFile

func (e *envFile) set(k, v string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.vars == nil {
		e.vars = map[string]string{}
	}
	e.vars[k] = v
}

// reloadEnvFile applies the env file at path again: a variable the file
// set before takes its new value (or is unset when the file dropped it); a
// variable set outside the file stays. undo puts everything back; changed
// names the variables whose value changed (names only: values are keys).
func reloadEnvFile(path string) (undo func(), changed []string, err error) {
	undo = func() {}
	if path == "" {
		return undo, nil, nil
	}
	b, err := os.ReadFile(path)
	m := map[string]any{}
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return undo, nil, fmt.Errorf("config: env file %s: %w", path, err)
	default:
		if m, err = parseEnvFile(path, b); err != nil {
			return undo, nil, err
		}
	}
	e := &envFromFile
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.vars == nil {
		e.vars = map[string]string{}
	}
	type saved struct {
		v, fileV      string
		set, fromFile bool
	}
	before := map[string]saved{}
	undo = func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		for k, s := range before {
			if s.set {
				_ = os.Setenv(k, s.v)
			} else {
				_ = os.Unsetenv(k)
			}
			if s.fromFile {
				e.vars[k] = s.fileV
			} else {
				delete(e.vars, k)
			}
		}
	}
	save := func(k string) {
		if _, ok := before[k]; ok {
			return
		}
		v, set := os.LookupEnv(k)
		fv, ff := e.vars[k]
		before[k] = saved{v: v, set: set, fileV: fv, fromFile: ff}
	}
	for k, v := range m {
		s, _ := v.(string)
		cur, set := os.LookupEnv(k)
		fv, ours := e.vars[k]
		if set && !(ours && cur == fv) {
			continue // set outside the file
		}
		save(k)
		if !set || cur != s {
			changed = append(changed, k)
		}
		if err := os.Setenv(k, s); err != nil {
			return undo, nil, fmt.Errorf("config: env file %s: %s: %w", path, k, err)
		}
		e.vars[k] = s
	}
	for k, fv := range e.vars {
		if _, still := m[k]; still {
			continue
		}
		if cur, set := os.LookupEnv(k); set && cur == fv {
			save(k)
			_ = os.Unsetenv(k)
			changed = append(changed, k)
		}
		delete(e.vars, k)
	}
	sort.Strings(changed)
	return undo, changed, nil
}

// levelHandler lets a reload change the log level of a handler built with a
// fixed one: it decides Enabled from a LevelVar and hands records to the
// wrapped handler (slog's handlers do not check the level again in Handle).
type levelHandler struct {
	inner slog.Handler
	level *slog.LevelVar
}

func (h *levelHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }
func (h *levelHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.inner.Handle(ctx, r)
}
func (h *levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &levelHandler{inner: h.inner.WithAttrs(as), level: h.level}
}
func (h *levelHandler) WithGroup(name string) slog.Handler {
	return &levelHandler{inner: h.inner.WithGroup(name), level: h.level}
}

// reloadable wraps log so that a reload can change its level. It starts at
// the lowest level log enables, so that it logs exactly what log did.
func (a *App) reloadable(log *slog.Logger) *slog.Logger {
	lv := slog.LevelError + 4
	for _, l := range []slog.Level{slog.LevelError, slog.LevelWarn, slog.LevelInfo, slog.LevelDebug} {
		if log.Enabled(context.Background(), l) {
			lv = l
		}
	}
	a.rl.level.Set(lv)
	return slog.New(&levelHandler{inner: log.Handler(), level: &a.rl.level})
}

// upstreamStatus is the health of every target of the routes serving now.
func (a *App) upstreamStatus() []upstream.TargetStatus {
	var out []upstream.TargetStatus
	for _, r := range a.relay.Config().Routes.Routes() {
		out = r.AppendTargets(out)
	}
	return out
}
