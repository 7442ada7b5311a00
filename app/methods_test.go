package app

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestRouteMethods: an exact-path route relays POST (and OPTIONS) only: a
// GET of OpenAI's /v1/chat/completions lists the project's stored
// completions, every tenant's under the shared provider key, and the relay
// forwarded it. Another method gets 405 with Allow, and a row naming the
// caller's key, without reaching the upstream; a route's methods set its
// own; a prefix route relays any method, as before.
func TestRouteMethods(t *testing.T) {
	upstreamLine := regexp.MustCompile(`(?m)^    upstream: \S+$`)
	r := startRelayYAML(t, func(y string) string {
		up := upstreamLine.FindString(y)
		return strings.Replace(y, "routes:\n", "routes:\n  - name: models\n    path: /v1/models\n"+up+
			"\n    auth_env: TEST_PROVIDER_KEY\n    methods: [GET]\n", 1)
	}, nil)
	send := func(method, path string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, r.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+relayKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp
	}
	before := r.mock.Count()
	for _, m := range []string{"GET", "DELETE", "PUT", "PATCH", "HEAD"} {
		resp := send(m, "/v1/chat/completions?limit=100")
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST, OPTIONS" {
			t.Errorf("%s on the exact chat route: %d Allow %q, want 405 with Allow: POST, OPTIONS", m, resp.StatusCode, resp.Header.Get("Allow"))
			continue
		}
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if row.Status != 405 || row.ErrorType != "bad_request" || row.Route != "openai" || row.Tenant != "test-tenant" || row.Method != m {
			t.Errorf("%s: row %+v", m, row)
		}
	}
	if n := r.mock.Count() - before; n != 0 {
		t.Errorf("%d refused requests reached the upstream", n)
	}
	// Without a key the key is checked first: 401, nothing about methods.
	req, _ := http.NewRequest("GET", r.base+"/v1/chat/completions", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Allow") != "" {
		t.Errorf("GET without a key: %d Allow %q, want 401 without Allow", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// A route's methods: GET on /v1/models is relayed, POST is not.
	if resp := send("GET", "/v1/models"); resp.StatusCode == http.StatusMethodNotAllowed {
		t.Errorf("GET on a methods: [GET] route: %d", resp.StatusCode)
	}
	if resp := send("POST", "/v1/models"); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET" {
		t.Errorf("POST on a methods: [GET] route: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	// A prefix route relays any method.
	if resp := send("GET", "/nokey/v1/files"); resp.StatusCode == http.StatusMethodNotAllowed {
		t.Errorf("GET on a prefix route: %d", resp.StatusCode)
	}
}

// TestRouteMethodsConfig: methods name relayed methods, in upper case, and
// none on a ws route.
func TestRouteMethodsConfig(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"routes: [{name: a, path: /a, upstream: 'https://x', methods: [get]}]", "routes[0].methods=get: must be one of"},
		{"routes: [{name: a, path: /a, upstream: 'https://x', methods: [TRACE]}]", "routes[0].methods=TRACE"},
		{"routes: [{name: a, path: /a, upstream: 'wss://x', kind: ws, methods: [GET]}]", "routes[0].methods=GET: a ws route takes GET handshakes only"},
		{"routes: [{name: a, path: /a, upstream: 'https://x', methods: []}]", "routes[0].methods=[]: must name at least one method"},
		{"routes: [{name: a, path: /a, upstream: 'https://x', auth_env: K, set_headers: {authorization: x}}]", "routes[0].set_headers=authorization: is the route's auth_header"},
		{"routes: [{name: a, path: /a, upstream: 'wss://x', kind: ws, auth_query: k, set_headers: {Authorization: x}}]", "routes[0].set_headers=Authorization: is the route's auth_header"},
	} {
		if _, err := Parse([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// A pool with a keyed target and one without: the entry is the
	// unkeyed target's credential.
	if _, err := Parse([]byte("routes: [{name: d, path: /d, upstreams: [{name: x, url: 'https://x', auth_env: K}, {name: y, url: 'https://y'}], set_headers: {Authorization: 'Bearer t'}}]")); err != nil {
		t.Errorf("set_headers Authorization on a pool with an unkeyed target: %v", err)
	}
	cfg, err := Parse([]byte("routes: [{name: a, path: /a, upstream: 'https://x'}, {name: b, path: /b/*, upstream: 'https://x'}, {name: c, path: /c, upstream: 'https://x', methods: [GET, POST]}]"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Routes[0].Methods, ","); got != "POST,OPTIONS" {
		t.Errorf("exact route's default methods %q", got)
	}
	if cfg.Routes[1].Methods != nil || strings.Join(cfg.Routes[2].Methods, ",") != "GET,POST" {
		t.Errorf("prefix route %q, route with methods %q", cfg.Routes[1].Methods, cfg.Routes[2].Methods)
	}
}

// TestRouteSetHeaders: a route's set_headers reach the upstream whatever
// the client sent under their names (a tenant changing a pinned
// OpenAI-Project, twice over), while its headers stay defaults the client
// may replace. Before, a client's own header always won.
func TestRouteSetHeaders(t *testing.T) {
	r := startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "    path: /v1/chat/completions\n",
			"    path: /v1/chat/completions\n    set_headers: {OpenAI-Project: proj_pinned}\n    headers: {OpenAI-Organization: org_default}\n", 1)
	}, nil)
	req, err := http.NewRequest("POST", r.base+"/v1/chat/completions", strings.NewReader(`{"model":"m","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+relayKey)
	req.Header["Openai-Project"] = []string{"proj_other", "proj_third"}
	req.Header.Set("OpenAI-Organization", "org_client")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	reqs := r.mock.Requests()
	if len(reqs) == 0 {
		t.Fatal("the upstream got no request")
	}
	h := reqs[len(reqs)-1].Header
	if got := h.Values("Openai-Project"); len(got) != 1 || got[0] != "proj_pinned" {
		t.Errorf("upstream's OpenAI-Project %q, want only the route's proj_pinned", got)
	}
	if got := h.Get("Openai-Organization"); got != "org_client" {
		t.Errorf("upstream's OpenAI-Organization %q, want the client's (headers are defaults)", got)
	}
}
