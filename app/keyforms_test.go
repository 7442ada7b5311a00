package app

import (
	"strings"
	"testing"
)

// geminiRoute is a route that gives the provider key as Gemini takes it.
const geminiRoute = `  - name: gemini
    path: /v1beta/models/*
    upstream: %BASE%
    auth_env: TEST_PROVIDER_KEY
    auth_header: x-goog-api-key
`

// TestRelayKeyInGoogleForms: Google's clients send their API key as
// "x-goog-api-key" or "?key="; the relay takes its relay key in either,
// never forwards the "key" parameter (it carries the relay key), and stores
// neither the client's x-goog-api-key nor the route's own key header.
func TestRelayKeyInGoogleForms(t *testing.T) {
	r := startRelayYAML(t, func(y string) string {
		return strings.Replace(y, "  - name: anthropic\n", strings.ReplaceAll(geminiRoute, "%BASE%", firstUpstream(y))+"  - name: anthropic\n", 1)
	}, nil)
	const chat = `{"model":"m","stream":true}`
	last := func() (path string, goog, auth string) {
		reqs := r.mock.Requests()
		got := reqs[len(reqs)-1]
		return got.Path, got.Header.Get("X-Goog-Api-Key"), got.Header.Get("Authorization")
	}

	t.Run("query key", func(t *testing.T) {
		resp := r.post(t, "/v1/chat/completions?alt=sse&key="+relayKey+"&x=1", chat, map[string]string{"Authorization": ""})
		body := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		path, _, auth := last()
		if path != "/v1/chat/completions?alt=sse&x=1" || auth != "Bearer "+providerKey {
			t.Errorf("upstream got %q with Authorization %q", path, auth)
		}
	})
	t.Run("x-goog-api-key", func(t *testing.T) {
		resp := r.post(t, "/v1/chat/completions", chat, map[string]string{"Authorization": "", "X-Goog-Api-Key": relayKey})
		body := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		_, goog, auth := last()
		if goog != "" || auth != "Bearer "+providerKey {
			t.Errorf("upstream got x-goog-api-key %q, Authorization %q", goog, auth)
		}
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if strings.Contains(row.ReqHeaders, relayKey) || !strings.Contains(row.ReqHeaders, `"x-goog-api-key":"[redacted]"`) {
			t.Errorf("request headers not redacted: %s", row.ReqHeaders)
		}
	})
	t.Run("subprotocol key on an HTTP route", func(t *testing.T) {
		// The relay takes a key as a WebSocket subprotocol entry (a
		// browser's WebSocket can put it nowhere else), on any route; on an
		// HTTP route the header must not reach the upstream, which would
		// log the relay key. Before the fix it was forwarded as sent.
		resp := r.post(t, "/v1/chat/completions", chat, map[string]string{"Authorization": "", "Sec-WebSocket-Protocol": "openai-insecure-api-key." + relayKey})
		body := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		reqs := r.mock.Requests()
		got := reqs[len(reqs)-1]
		if p := got.Header.Get("Sec-WebSocket-Protocol"); p != "" || got.Header.Get("Authorization") != "Bearer "+providerKey {
			t.Errorf("upstream got Sec-WebSocket-Protocol %q, Authorization %q", p, got.Header.Get("Authorization"))
		}
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		if strings.Contains(row.ReqHeaders, relayKey) {
			t.Errorf("request headers not redacted: %s", row.ReqHeaders)
		}
	})
	t.Run("wrong query key", func(t *testing.T) {
		resp := r.post(t, "/v1/chat/completions?key=sk-not-a-relay-key", chat, map[string]string{"Authorization": ""})
		body := readAll(t, resp)
		if resp.StatusCode != 401 || strings.Contains(body, "sk-not-a-relay-key") {
			t.Errorf("status %d: %s", resp.StatusCode, body)
		}
	})
	t.Run("route keyed by x-goog-api-key", func(t *testing.T) {
		const clientGoogleKey = "AIza-client-own-google-key"
		resp := r.post(t, "/v1beta/models/gemini-x:streamGenerateContent?alt=sse&key="+relayKey, `{"contents":[]}`,
			map[string]string{"Authorization": "", "X-Goog-Api-Key": clientGoogleKey})
		// The relay key is the query's; the client's x-goog-api-key is
		// not a relay key but comes first, so it is refused...
		if body := readAll(t, resp); resp.StatusCode != 401 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		// ...and with the relay key in Authorization the request goes on.
		resp = r.post(t, "/v1beta/models/gemini-x:streamGenerateContent?alt=sse&key="+relayKey, `{"contents":[]}`,
			map[string]string{"X-Goog-Api-Key": clientGoogleKey})
		readAll(t, resp)
		path, goog, auth := last()
		if path != "/v1beta/models/gemini-x:streamGenerateContent?alt=sse" || goog != providerKey || auth != "" {
			t.Errorf("upstream got %q with x-goog-api-key %q, Authorization %q", path, goog, auth)
		}
		row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
		for _, secret := range []string{relayKey, clientGoogleKey, providerKey} {
			if strings.Contains(row.ReqHeaders, secret) || strings.Contains(row.Path, secret) {
				t.Errorf("row keeps a key: path %q, headers %s", row.Path, row.ReqHeaders)
			}
		}
	})
}

// TestRouteHeaderWhereClientsIsNotForwarded: a route's configured header
// goes upstream when the client's field of that name is one the relay does
// not forward: a self-hosted server's key given as the route's
// Authorization header (no auth_env), while the client's Authorization
// carries the relay key. Before the fix the route's value was skipped
// because the client had sent the field, and the upstream got none (401).
func TestRouteHeaderWhereClientsIsNotForwarded(t *testing.T) {
	r := startRelayYAML(t, func(y string) string {
		// The first route (openai) without a provider key of its own.
		return strings.Replace(y, "    auth_env: TEST_PROVIDER_KEY\n", `    headers: {Authorization: "Bearer `+providerKey+`"}
`, 1)
	}, nil)
	resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true}`, nil)
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	reqs := r.mock.Requests()
	if got := reqs[len(reqs)-1].Header.Get("Authorization"); got != "Bearer "+providerKey {
		t.Errorf("upstream got Authorization %q, want the route's", got)
	}
}

// TestIncludeUsageOnlyForChat: inject_include_usage adds stream_options to
// chat completions requests only; a route that also carries other APIs
// (here Anthropic's messages) sends their bodies as the client wrote
// them. Before the fix every streaming JSON body got the parameter, which
// the Responses and Messages APIs refuse.
func TestIncludeUsageOnlyForChat(t *testing.T) {
	r := startRelayWith(t, "", func(c *Config) {
		c.Routes[0].InjectIncludeUsage = true // openai
		c.Routes[1].InjectIncludeUsage = true // anthropic
	})
	for _, tt := range []struct {
		path string
		want bool
	}{{"/v1/chat/completions", true}, {"/v1/messages", false}} {
		resp := r.post(t, tt.path, `{"model":"m","stream":true}`, nil)
		if body := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("%s: status %d: %s", tt.path, resp.StatusCode, body)
		}
		reqs := r.mock.Requests()
		got := reqs[len(reqs)-1]
		if has := strings.Contains(string(got.Body), `"stream_options"`); got.Path != tt.path || has != tt.want {
			t.Errorf("%s: upstream got %s with body %s; stream_options wanted %v", tt.path, got.Path, got.Body, tt.want)
		}
	}
}
