package upstream

import (
	"net/http"
	"testing"

	"github.com/stream-relay/stream-relay/record"
)

// TestWSURL: ws routes map http(s) and ws(s) upstreams to ws(s) URLs, keep
// the client's query as it came and, with AuthQuery, replace any value the
// client sent for the key's parameter by the provider key.
func TestWSURL(t *testing.T) {
	for _, tc := range []struct {
		upstream, query, authQuery, want string
	}{
		{"https://api.example.com/", "model=gpt-realtime", "", "wss://api.example.com/v1/realtime?model=gpt-realtime"},
		{"ws://127.0.0.1:9/base", "", "", "ws://127.0.0.1:9/base/v1/realtime"},
		{"wss://api.example.com", "a=1&api_key=client-guess&b=2", "api_key", "wss://api.example.com/v1/realtime?a=1&b=2&api_key=prov%2Fkey"},
		{"http://h", "api%5Fkey=x&&c", "api_key", "ws://h/v1/realtime?c&api_key=prov%2Fkey"},
		// Empty pairs after the first kept are the client's: kept.
		{"http://h", "a=1&&b&", "", "ws://h/v1/realtime?a=1&&b&"},
		{"http://h", "key=relay&&x&&", "", "ws://h/v1/realtime?x&&"},
		{"http://h", "&key=relay", "", "ws://h/v1/realtime"},
	} {
		r, err := NewRoute(Options{Name: "rt", Path: "/v1/realtime", Upstream: tc.upstream, Kind: record.KindWS,
			ProviderKey: "prov/key", AuthQuery: tc.authQuery}, NewClients())
		if err != nil {
			t.Fatal(err)
		}
		got := r.wsURL(&Request{Path: []byte("/v1/realtime"), Query: []byte(tc.query)})
		if got != tc.want {
			t.Errorf("%s ? %s: got %s, want %s", tc.upstream, tc.query, got, tc.want)
		}
	}
	if _, err := NewRoute(Options{Name: "rt", Path: "/x", Upstream: "ws://h"}, NewClients()); err == nil {
		t.Error("an sse route took a ws:// upstream")
	}
}

// TestEndToEndRenamesRequestID: a WebSocket handshake answer's own
// X-Request-Id goes to the client as X-Upstream-Request-Id (the relay's
// X-Request-Id names the row); hop-by-hop fields stay behind.
func TestEndToEndRenamesRequestID(t *testing.T) {
	out := endToEnd(http.Header{"X-Request-Id": {"req_u1"}, "Connection": {"Upgrade"}, "Openai-Processing-Ms": {"5"}})
	if got := out.Values("X-Request-Id"); len(got) != 0 {
		t.Errorf("X-Request-Id copied: %q", got)
	}
	if got := out.Values(UpstreamRequestID); len(got) != 1 || got[0] != "req_u1" {
		t.Errorf("%s = %q", UpstreamRequestID, got)
	}
	if out.Get("Openai-Processing-Ms") != "5" || out.Get("Connection") != "" {
		t.Errorf("end-to-end fields %v", out)
	}
}

// TestSubprotocolsWithoutKey: a key entry of the client's subprotocols
// ("openai-insecure-api-key.<key>", any case) never goes upstream; the
// others go in order.
func TestSubprotocolsWithoutKey(t *testing.T) {
	tests := []struct{ give, want string }{
		{"realtime, openai-insecure-api-key.sk-relay", "realtime"},
		{"openai-insecure-api-key.sk-relay", ""},
		{"realtime,OPENAI-INSECURE-API-KEY.x, openai-beta.realtime-v1 ,openai-project.p", "realtime, openai-beta.realtime-v1, openai-project.p"},
		{" , realtime,, ", "realtime"},
		{"openai-insecure-api-key", "openai-insecure-api-key"},
	}
	for _, tt := range tests {
		if got := string(appendSubprotocolsWithoutKey(nil, []byte(tt.give))); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.give, got, tt.want)
		}
	}
}
