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
