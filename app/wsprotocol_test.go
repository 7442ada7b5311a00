package app

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// TestWSSubprotocolsInRow: a session's row keeps the known subprotocol
// names the client offered ("realtime", "openai-beta.…") and the one the
// upstream chose; of an entry that carries the relay key
// ("openai-insecure-api-key.<key>") only the key is redacted, whether the
// key authorized the session or another header did; any other entry (a
// credential of another scheme, as Deepgram's "token, <key>") is
// redacted whole.
func TestWSSubprotocolsInRow(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", nil)
	for _, tc := range []struct{ name, key, protocols, stored string }{
		{"key in the subprotocols", "", "realtime, openai-insecure-api-key." + relayKey + ", openai-beta.realtime-v1",
			"realtime, openai-insecure-api-key.[redacted], openai-beta.realtime-v1"},
		{"key in Authorization", relayKey, "realtime, openai-beta.realtime-v1", "realtime, openai-beta.realtime-v1"},
		{"both", relayKey, "OPENAI-INSECURE-API-KEY." + relayKey + ",realtime", "OPENAI-INSECURE-API-KEY.[redacted], realtime"},
		{"another scheme's key", relayKey, "realtime, token, dg-secret-123", "realtime, token, [redacted]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, resp, err := dialWS(t, r.base, tc.key, http.Header{"Sec-Websocket-Protocol": {tc.protocols}})
			if err != nil {
				t.Fatalf("dial: %v (%v)", err, resp)
			}
			defer c.Close()
			if c.Subprotocol() != "realtime" {
				t.Errorf("client's subprotocol %q, want realtime", c.Subprotocol())
			}
			readMsg(t, c)
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
			readClose(t, c, 10*time.Second)
			row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
			if want := `"sec-websocket-protocol":"` + tc.stored + `"`; !strings.Contains(row.ReqHeaders, want) {
				t.Errorf("row request headers %s lack %s", row.ReqHeaders, want)
			}
			if strings.Contains(row.ReqHeaders, relayKey) || strings.Contains(row.RespHeaders, relayKey) || strings.Contains(row.ReqHeaders, "dg-secret") {
				t.Errorf("a key is in the row: %s %s", row.ReqHeaders, row.RespHeaders)
			}
			if want := `"sec-websocket-protocol":"realtime"`; !strings.Contains(row.RespHeaders, want) {
				t.Errorf("row response headers %s lack %s", row.RespHeaders, want)
			}
		})
	}
}
