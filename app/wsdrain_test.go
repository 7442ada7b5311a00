package app

import (
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

// TestWSDrainStalledClients: a shutdown tells every open session at once,
// even while clients take no bytes. The relay's write to such a client is
// stuck, and a close frame to it waits up to a second for that write: Drain
// must not wait so for each session in turn (with hundreds of stalled
// clients, the listener would stay open and the other sessions untold for
// minutes, past any orchestrator's kill). Every row says shutting_down.
func TestWSDrainStalledClients(t *testing.T) {
	up := startWSUpstream(t, "Authorization", "")
	r := startWSRelay(t, up, "", nil)
	const stalled, flood = 8, 5000 // 20 MB a session: more than the sockets between hold
	var ids []string
	for range stalled {
		c, resp := openSession(t, r)
		if err := c.WriteMessage(websocket.TextMessage, []byte("flood:5000")); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.Header.Get("X-Request-Id"))
	}
	// The floods stop where the sockets are full: the relay's writes to
	// the clients are stuck.
	prev := int64(-1)
	for deadline := time.Now().Add(30 * time.Second); ; {
		time.Sleep(500 * time.Millisecond)
		cur := up.flooded.Load()
		if cur == prev {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the floods never stopped (%d messages sent)", cur)
		}
		prev = cur
	}
	if prev >= stalled*flood {
		t.Fatalf("every flood went through (%d messages): no client write is stuck", prev)
	}
	healthy, resp := openSession(t, r)
	ids = append(ids, resp.Header.Get("X-Request-Id"))

	start := time.Now()
	r.app.relay.Drain()
	took := time.Since(start)
	ce, _ := readClose(t, healthy, 10*time.Second)
	if ce == nil || ce.Code != websocket.CloseGoingAway || ce.Text != "relay shutting down" {
		t.Fatalf("the healthy client got %v at shutdown", ce)
	}
	// Waiting for each stuck close frame in turn takes a second a session.
	if took > stalled*time.Second/2 {
		t.Errorf("Drain took %v with %d stalled clients: it waited for each one's close frame", took, stalled)
	}
	for _, id := range ids {
		if row := r.rows.wait(t, id); row.ErrorType != "shutting_down" {
			t.Errorf("row %s: error %q, want shutting_down", id, row.ErrorType)
		}
	}
}
