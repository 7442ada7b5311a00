package chlog

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestHTTPSHandshakeFailureNotSent: an https ClickHouse whose certificate
// does not verify, or that never finishes the TLS handshake, was never sent
// the insert: the error is not an unknown outcome (which has the block
// checked in the table before it goes again), and the silent one ends at
// the handshake timeout (it waited for the insert timeout).
func TestHTTPSHandshakeFailureNotSent(t *testing.T) {
	untrusted := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(untrusted.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() }) // silent: no TLS
		}
	}()
	for name, u := range map[string]string{"untrusted certificate": untrusted.URL, "silent server": "https://" + ln.Addr().String()} {
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
