package upstream

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestLateBytesTLS: over TLS as over plain TCP, bytes an upstream sends on
// a connection after its answer ended (a second response written apart, or
// in the same record, or a 408 sent on the idle connection before closing
// it) never become the next request's answer, another client's: the
// connection is dropped when it comes back from the pool holding them.
func TestLateBytesTLS(t *testing.T) {
	holder := httptest.NewUnstartedServer(nil)
	holder.StartTLS() // for its certificate
	cert := holder.TLS.Certificates[0]
	holder.Close()

	for _, tc := range []struct {
		name  string
		first func(c net.Conn) // answers the first request, then misbehaves
	}{
		{"second-response-apart", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
			time.Sleep(20 * time.Millisecond)
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nBAD")
		}},
		{"second-response-same-record", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nBAD")
		}},
		{"408-on-idle", func(c net.Conn) {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			time.Sleep(50 * time.Millisecond)
			_, _ = io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var served atomic.Int64
			addr, accepted := scriptedUpstream(t, func(raw net.Conn) {
				c := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{cert}})
				defer c.Close()
				br := bufio.NewReader(c)
				for readPost(br) == nil {
					if served.Add(1) == 1 {
						tc.first(c)
						continue
					}
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nGOOD")
				}
			})
			r := rawRouteWith(t, addr, func(o *Options) {
				o.Upstream, o.TLSSkipVerify = "https://"+addr, true
			})
			s, resp, _, _, err := openPost(r)
			if err != nil {
				t.Fatal(err)
			}
			s.Prepare(resp, nil)
			time.Sleep(300 * time.Millisecond) // the stray bytes are there by now
			s, resp, _, _, err = openPost(r)
			if err != nil {
				t.Fatal(err)
			}
			s.Prepare(resp, nil)
			if resp.StatusCode() != 200 || string(resp.Body()) != "GOOD" {
				t.Fatalf("second request answered %d %q: the first answer's stray bytes", resp.StatusCode(), resp.Body())
			}
			if n := accepted.Load(); n != 2 {
				t.Errorf("%d upstream connections, want 2 (the dirty one dropped)", n)
			}
		})
	}
}

// TestTLSConnectionReused: a TLS connection that holds nothing past its
// answer is reused (the look at it leaves it whole).
func TestTLSConnectionReused(t *testing.T) {
	holder := httptest.NewUnstartedServer(nil)
	holder.StartTLS()
	cert := holder.TLS.Certificates[0]
	holder.Close()
	addr, accepted := scriptedUpstream(t, func(raw net.Conn) {
		c := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{cert}})
		defer c.Close()
		br := bufio.NewReader(c)
		for readPost(br) == nil {
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nGOOD")
		}
	})
	r := rawRouteWith(t, addr, func(o *Options) { o.Upstream, o.TLSSkipVerify = "https://"+addr, true })
	sendGood(t, r, 5)
	if n := accepted.Load(); n != 1 {
		t.Errorf("%d upstream connections for 5 requests in a row, want 1", n)
	}
}
