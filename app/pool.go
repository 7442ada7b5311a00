package app

import (
	"strconv"
	"time"

	"github.com/stream-relay/stream-relay/upstream"
)

// validateUpstreams checks a route's upstreams list; f names a field of the
// route.
func (r *RouteConfig) validateUpstreams(f func(string) string) error {
	if r.Upstream != "" {
		return &fieldError{f("upstream"), shownURL(r.Upstream), "give upstream or upstreams, not both"}
	}
	if r.Kind == "ws" {
		return &fieldError{f("upstreams"), len(r.Upstreams), "kind ws takes one upstream: pools and failover are for sse and raw routes"}
	}
	if len(r.Upstreams) > 64 {
		return &fieldError{f("upstreams"), len(r.Upstreams), "at most 64 targets"}
	}
	names := map[string]bool{}
	primaries := 0
	for i, u := range r.Upstreams {
		g := func(name string) string { return f("upstreams[" + strconv.Itoa(i) + "]." + name) }
		if err := checkHTTPURL(wsAsHTTP(r.Kind, u.URL)); err != nil {
			return &fieldError{g("url"), shownURL(u.URL), err.Error()}
		}
		if err := checkEnvName(g("auth_env"), u.AuthEnv); err != nil {
			return err
		}
		if u.Weight < 0 {
			return &fieldError{g("weight"), u.Weight, "must not be negative (0: 1)"}
		}
		label := u.Name
		if label == "" {
			label = strconv.Itoa(i)
		}
		if names[label] {
			return &fieldError{g("name"), label, "duplicate target name (an unnamed target is called by its index)"}
		}
		names[label] = true
		if !u.Backup {
			primaries++
		}
	}
	if primaries == 0 {
		return &fieldError{f("upstreams"), len(r.Upstreams), "every target is a backup: at least one must be a primary"}
	}
	return nil
}

// validateFailover checks a route's failover and health settings.
func (r *RouteConfig) validateFailover(f func(string) string) error {
	if r.Kind == "ws" && (len(r.Failover.On) > 0 || r.Failover.MaxAttempts != 0) {
		return &fieldError{f("failover"), r.Failover.On, "not for a ws route: a session is never retried on another target"}
	}
	if r.Kind == "ws" && r.Health != (HealthConfig{}) {
		return &fieldError{f("health"), r.Health.MaxFails, "not for a ws route: its one upstream has no passive health"}
	}
	for i, c := range r.Failover.On {
		switch c {
		case upstream.FailoverConnect, upstream.FailoverTimeout, upstream.Failover429, upstream.Failover5xx:
		default:
			return &fieldError{f("failover.on[" + strconv.Itoa(i) + "]"), c, "must be connect, timeout, 429 or 5xx"}
		}
	}
	if m := r.Failover.MaxAttempts; m < 0 || m > upstream.MaxAttempts {
		return &fieldError{f("failover.max_attempts"), m, "must be 1.." + strconv.Itoa(upstream.MaxAttempts) + " (0: 2)"}
	}
	if r.Health.MaxFails < 0 {
		return &fieldError{f("health.max_fails"), r.Health.MaxFails, "must not be negative (0: 3)"}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"health.cooldown", r.Health.Cooldown}, {"health.max_cooldown", r.Health.MaxCooldown}} {
		if d.v < 0 {
			return &fieldError{f(d.name), d.v, "must not be negative"}
		}
	}
	return nil
}

// targets turns a route's upstreams list into upstream targets, reading
// each target's provider key from the environment.
func (r *RouteConfig) targets() []upstream.Target {
	out := make([]upstream.Target, 0, len(r.Upstreams))
	for _, u := range r.Upstreams {
		env := u.AuthEnv
		if env == "" {
			env = r.AuthEnv
		}
		t := upstream.Target{Name: u.Name, URL: u.URL, KeyEnv: env, Weight: u.Weight, Backup: u.Backup}
		if env != "" {
			t.ProviderKey = keyFromEnv(env)
		}
		out = append(out, t)
	}
	return out
}
