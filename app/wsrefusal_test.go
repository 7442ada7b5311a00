package app

import (
	"net/http"
	"testing"
)

// TestWSRefusalRow: an upstream that refuses the upgrade is relayed as it
// answered, and its row keeps that answer as an HTTP route's row keeps an
// upstream's 4xx body: the body in response_chunks, its size in bytes_out.
func TestWSRefusalRow(t *testing.T) {
	up := startWSUpstream(t, "", "api_key") // wants the key in ?api_key=: the route's header is refused
	r := startWSRelay(t, up, "", nil)
	_, resp, err := dialWS(t, r.base, relayKey, nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("refused handshake: %v %v", err, resp)
	}
	got := readAll(t, resp)
	if got == "" {
		t.Fatal("the client got no body with the refusal")
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.ErrorType != "upstream_status" || row.Status != http.StatusUnauthorized {
		t.Fatalf("row %s %d, want upstream_status 401", row.ErrorType, row.Status)
	}
	if len(row.Chunks) != 1 || row.Chunks[0] != got || row.BytesOut != int64(len(got)) || row.ChunkCount != 1 {
		t.Fatalf("row chunks %q (%d, %d bytes out), want the body the client got, %q", row.Chunks, row.ChunkCount, row.BytesOut, got)
	}
}

// TestWSBadHandshakeTakesNoToken: a request on a ws route that is no
// handshake the relay can relay (a POST: 426; a wrong version: 400) is
// refused before the rate limit, and takes none of the tenant's tokens.
func TestWSBadHandshakeTakesNoToken(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	mutate, _ := withLimits("", 60, 2)
	r := startWSRelay(t, up, "", mutate)
	for i := range 3 {
		resp := r.post(t, "/v1/realtime", `{}`, nil)
		readAll(t, resp)
		if resp.StatusCode != http.StatusUpgradeRequired {
			t.Fatalf("POST %d on the ws route: %d, want 426", i, resp.StatusCode)
		}
	}
	hdr := http.Header{"Sec-WebSocket-Version": {"8"}, "Sec-WebSocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Upgrade": {"websocket"}, "Connection": {"Upgrade"}}
	req, _ := http.NewRequest(http.MethodGet, r.base+"/v1/realtime", nil)
	req.Header = hdr
	req.Header.Set("Authorization", "Bearer "+relayKey)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("version 8 handshake: %d, want 400", resp.StatusCode)
	}
	// The burst of 2 is whole: two requests go through.
	for i := range 2 {
		resp := r.post(t, "/v1/chat/completions", `{"model":"m","stream":true}`, nil)
		readAll(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d after the refused handshakes: %d, want 200 (their tokens were taken)", i, resp.StatusCode)
		}
	}
}
