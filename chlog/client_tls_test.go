package chlog

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stream-relay/stream-relay/internal/servicetest"
)

// TestHTTPSHandshakeFailureNotSent: an https ClickHouse whose certificate
// does not verify, or that never finishes the TLS handshake, was never sent
// the insert: the error is not an unknown outcome (which has the block
// checked in the table before it goes again), and the silent one ends at
// the handshake timeout (it waited for the insert timeout).
func TestHTTPSHandshakeFailureNotSent(t *testing.T) {
	untrusted := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(untrusted.Close)
	for name, u := range map[string]string{"untrusted certificate": untrusted.URL, "silent server": "https://" + servicetest.SilentListener(t)} {
		t.Run(name, func(t *testing.T) {
			c := newClient(&Options{URL: u, Database: "relay"})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			err := c.do(ctx, u+"/?query=INSERT", []byte("x"), nil)
			if err == nil || errors.Is(err, errUnknownOutcome) || ctx.Err() != nil {
				t.Fatalf("after %s: %v; want a failed handshake, not an unknown outcome", time.Since(start), err)
			}
		})
	}
}
