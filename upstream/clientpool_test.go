package upstream

import (
	"net/url"
	"testing"
	"time"
)

// TestClientPerConnectionSettings: routes to one host share a connection
// pool when their connection settings are the same, and a route with a
// max_conns or connect_timeout of its own gets a pool with them. Before the
// fix the first route to reach a host fixed them for every route there.
func TestClientPerConnectionSettings(t *testing.T) {
	cs := NewClients()
	u, _ := url.Parse("https://api.example.com/v1")
	base := clientOptions{connectTimeout: 10 * time.Second, maxConns: 4096}
	a, b := cs.get(u, base), cs.get(u, base)
	if a != b {
		t.Fatal("two routes with the same settings got two pools")
	}
	small := base
	small.maxConns = 50
	c := cs.get(u, small)
	if c == a || c.MaxConns != 50 || a.MaxConns != 4096 {
		t.Fatalf("max_conns 50 got pool %p (MaxConns %d) beside %p (MaxConns %d)", c, c.MaxConns, a, a.MaxConns)
	}
	quick := base
	quick.connectTimeout = 2 * time.Second
	if d := cs.get(u, quick); d == a || d.MaxConnWaitTimeout != 2*time.Second {
		t.Fatalf("connect_timeout 2s got pool %p (wait %v)", d, d.MaxConnWaitTimeout)
	}
}

// TestClientsKeepDropsUnusedPools: each reload that changes a host's
// connection settings makes a pool; Keep with the new routes forgets the
// pools no route uses (they were kept for the process's life).
func TestClientsKeepDropsUnusedPools(t *testing.T) {
	cs := NewClients()
	routeWith := func(maxConns int) *Route {
		r, err := NewRoute(Options{Name: "a", Path: "/a", Upstream: "http://127.0.0.1:9", ProviderKey: "pk", MaxConns: maxConns}, cs)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	live := routeWith(10)
	for n := 11; n < 20; n++ { // nine reloads, each with max_conns of its own
		live = routeWith(n)
		cs.Keep([]*Route{live})
	}
	if len(cs.clients) != 1 {
		t.Fatalf("%d pools after nine reloads, want the live route's one", len(cs.clients))
	}
	if c := cs.get(mustURL(t, "http://127.0.0.1:9"), clientOptions{maxConns: 19, connectTimeout: live.ConnectTimeout}); c != live.pool.targets[0].route.client {
		t.Fatal("the live route's pool was dropped")
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
