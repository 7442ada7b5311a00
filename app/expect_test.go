package app

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/internal/servicetest"
	"github.com/stream-relay/stream-relay/record"
)

// expectHead is the head of a POST to path that asks for 100-continue,
// with the header lines hdr (each ending in CRLF) and a body of n bytes
// (n < 0: chunked).
func expectHead(path, hdr string, n int) string {
	framing := "Content-Length: " + strconv.Itoa(n)
	if n < 0 {
		framing = "Transfer-Encoding: chunked"
	}
	return "POST " + path + " HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n" + hdr +
		"Expect: 100-continue\r\n" + framing + "\r\n\r\n"
}

// TestExpectContinueRefusedBeforeUpload: a request with "Expect:
// 100-continue" that the relay refuses whatever its body holds gets the
// relay's refusal instead of 100 Continue, before anything of the body was
// sent: the JSON error, an X-Request-Id, a row (bytes in: the declared
// length) and the metrics, as after an upload, and the connection closed.
// A valid request gets 100 Continue and is served; the rate limit is asked
// once for it, and refuses the next one before its upload (429).
func TestExpectContinueRefusedBeforeUpload(t *testing.T) {
	r := startRelayWith(t, "", func(c *Config) {
		c.RateLimit.Disabled = false
		c.RateLimit.Default = 2
		c.RateLimit.Burst = 2
	})
	addr := strings.TrimPrefix(r.base, "http://")
	auth := "Authorization: Bearer " + relayKey + "\r\n"
	tests := []struct {
		name      string
		path, hdr string
		n         int
		status    int
		errType   string
		keyed     bool  // the row names the relay key
		bytesIn   int64 // the row's bytes in: the declared length
	}{
		{"no relay key", "/v1/chat/completions", "", 3000, 401, record.ErrUnauthorized, false, 3000},
		{"unknown relay key", "/v1/chat/completions", "Authorization: Bearer sk-wrong\r\n", 3000, 401, record.ErrUnauthorized, false, 3000},
		{"unknown x-api-key", "/v1/messages", "X-Api-Key: sk-wrong\r\n", 3000, 401, record.ErrUnauthorized, false, 3000},
		{"unknown relay key, chunked", "/v1/chat/completions", "Authorization: Bearer sk-wrong\r\n", -1, 401, record.ErrUnauthorized, false, 0},
		{"tenant not allowed", "/v1/chat/completions", auth + "X-Tenant-Id: nope\r\n", 3000, 403, record.ErrForbidden, true, 3000},
		{"over the route's limit", "/v1/chat/completions", auth, 100000, 413, record.ErrBodyTooLarge, true, 100000},
		{"over the server's limit, no route", "/nowhere", auth, 100000, 413, record.ErrBodyTooLarge, true, 100000},
		// fasthttp frames it by Transfer-Encoding: no declared length.
		{"both framings", "/v1/chat/completions", auth + "Transfer-Encoding: chunked\r\n", 3000, 400, record.ErrBadRequest, true, 0},
	}
	series := func(path string, status int) string {
		route := "unmatched"
		switch path {
		case "/v1/chat/completions":
			route = "openai"
		case "/v1/messages":
			route = "anthropic"
		}
		return `relay_requests_total{route="` + route + `",status="` + strconv.Itoa(status) + `"}`
	}
	want := map[string]float64{}
	before := getMetrics(t, r.base+"/metrics")
	upstreamBefore := r.mock.Count()
	for _, tt := range tests {
		want[series(tt.path, tt.status)]++
		t.Run(tt.name, func(t *testing.T) {
			resp, br, _ := servicetest.SendHead(t, addr, expectHead(tt.path, tt.hdr, tt.n))
			if resp.StatusCode == http.StatusContinue {
				t.Fatal("100 Continue: the client would upload its body before it is refused")
			}
			body := readAll(t, resp)
			ans := edgeAnswer{resp: "HTTP/1.1 " + resp.Status + "\r\n\r\n" + body}
			id := resp.Header.Get("X-Request-Id")
			if resp.StatusCode != tt.status || ans.errorType() != tt.errType || len(id) != record.IDLen || !resp.Close {
				t.Fatalf("got %d %q, id %q, close %v; want %d %s, an id, closed: %s", resp.StatusCode, ans.errorType(), id, resp.Close, tt.status, tt.errType, body)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("the connection was not closed after the refusal: %v", err)
			}
			row := r.rows.wait(t, id)
			if row.Status != tt.status || row.ErrorType != tt.errType || row.Method != "POST" || row.Path != tt.path {
				t.Errorf("row %d %q %s %s", row.Status, row.ErrorType, row.Method, row.Path)
			}
			if row.BytesIn != tt.bytesIn {
				t.Errorf("row bytes_in %d, want %d", row.BytesIn, tt.bytesIn)
			}
			if (row.KeyID != "") != tt.keyed {
				t.Errorf("row key_id %q, keyed %v", row.KeyID, tt.keyed)
			}
			if !strings.Contains(row.ReqHeaders, `"expect":"100-continue"`) {
				t.Errorf("row headers %s", row.ReqHeaders)
			}
		})
	}

	// Tenant "second" may send two requests a minute: both get 100
	// Continue and are served (one decision each), the third is refused
	// before its upload.
	body := `{"model":"m","pad":"` + strings.Repeat("a", 3000) + `"}`
	second := "Authorization: Bearer sk-relay-second\r\n"
	for i := range 2 {
		resp, br, c := servicetest.SendHead(t, addr, expectHead("/v1/chat/completions", second, len(body)))
		if resp.StatusCode != http.StatusContinue {
			t.Fatalf("request %d of tenant second: %d before its upload, want 100: %s", i, resp.StatusCode, readAll(t, resp))
		}
		if _, err := io.WriteString(c, body); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out := readAll(t, resp); resp.StatusCode != 200 {
			t.Fatalf("request %d of tenant second: %d %s", i, resp.StatusCode, out)
		}
		if row := r.rows.wait(t, resp.Header.Get("X-Request-Id")); row.BytesIn != int64(len(body)) || row.Tenant != "second" {
			t.Errorf("request %d: row bytes_in %d tenant %q", i, row.BytesIn, row.Tenant)
		}
	}
	resp, _, _ := servicetest.SendHead(t, addr, expectHead("/v1/chat/completions", second, len(body)))
	if out := readAll(t, resp); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" ||
		resp.Header.Get("X-Ratelimit-Limit") != "2" || !resp.Close {
		t.Fatalf("third request of tenant second: %d %v %s, want 429 with Retry-After before the upload", resp.StatusCode, resp.Header, out)
	}
	row := r.rows.wait(t, resp.Header.Get("X-Request-Id"))
	if row.ErrorType != record.ErrRateLimited || row.Tenant != "second" || row.KeyID == "" || row.BytesIn != int64(len(body)) {
		t.Errorf("429 row: %q tenant %q key %q bytes_in %d", row.ErrorType, row.Tenant, row.KeyID, row.BytesIn)
	}
	want[series("/v1/chat/completions", 429)]++

	if n := r.mock.Count() - upstreamBefore; n != 2 {
		t.Errorf("%d requests reached the upstream, want the 2 admitted", n)
	}
	after := getMetrics(t, r.base+"/metrics")
	for s, n := range want {
		if got := after[s] - before[s]; got != n {
			t.Errorf("%s went up by %v, want %v", s, got, n)
		}
	}
}

// TestExpectContinueCurl: curl (7.88) sends "Expect: 100-continue" on its
// own for a body over 1 MiB, and for any body when told to, and waits for
// the answer: refused, it uploads nothing; admitted, it uploads and is
// served.
func TestExpectContinueCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	const limit = 4 << 20
	r := startRelayWith(t, "", func(c *Config) {
		c.Server.MaxBodyBytes = limit
		for i := range c.Routes {
			c.Routes[i].MaxBodyBytes = limit
		}
	})
	dir := t.TempDir()
	file := func(name string, n int) (string, int) {
		p := filepath.Join(dir, name)
		b := []byte(`{"model":"m","pad":"` + strings.Repeat("a", n) + `"}`)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p, len(b)
	}
	small, _ := file("small.json", 3000)
	large, largeLen := file("large.json", 2<<20)
	over, _ := file("over.json", limit+1)
	tests := []struct {
		name, key, body string
		expect          bool // sent explicitly
		want            string
	}{
		{"unknown key", "sk-wrong", large, false, "401 0"},
		{"no key", "", large, false, "401 0"},
		{"over the route's limit", relayKey, over, false, "413 0"},
		{"unknown key, Expect asked for", "sk-wrong", small, true, "401 0"},
		{"valid key", relayKey, large, false, "200 " + strconv.Itoa(largeLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-s", "-o", "/dev/null", "-D", "-", "-w", "\n%{http_code} %{size_upload}", "-m", "20",
				"-H", "Content-Type: application/json", "--data-binary", "@" + tt.body}
			if tt.key != "" {
				args = append(args, "-H", "Authorization: Bearer "+tt.key)
			}
			if tt.expect {
				args = append(args, "-H", "Expect: 100-continue")
			}
			out, err := exec.Command(curl, append(args, r.base+"/v1/chat/completions")...).Output()
			if err != nil {
				t.Fatalf("curl: %v: %s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if got := lines[len(lines)-1]; got != tt.want {
				t.Fatalf("curl: %q (status, bytes uploaded), want %q:\n%s", got, tt.want, out)
			}
			var id string
			for _, l := range lines {
				if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "X-Request-Id") {
					id = strings.TrimSpace(v)
				}
			}
			row := r.rows.wait(t, id)
			if !strings.Contains(row.ReqHeaders, `"expect":"100-continue"`) {
				t.Errorf("curl sent no Expect: row headers %s", row.ReqHeaders)
			}
		})
	}
}

// TestExpectContinueOwnPaths: the paths the relay's server answers itself
// (App.ownPaths, given to the handlers as OwnPaths) get 100 Continue and
// their answer when a request for them asks for it, as Fiber matches them
// (case and trailing slashes aside); a path no route has is refused 404
// before the upload. With metrics.addr set, /metrics is not among them.
func TestExpectContinueOwnPaths(t *testing.T) {
	r := startRelayWith(t, "", nil)
	addr := strings.TrimPrefix(r.base, "http://")
	get := func(method, path string) string {
		return method + " " + path + " HTTP/1.1\r\nHost: relay\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
	}
	for _, tt := range []struct {
		method, path string
		first, final int
	}{
		{"GET", "/healthz", 100, 200},
		{"HEAD", "/READYZ/", 100, 200},
		{"GET", "/metrics", 100, 200},
		{"GET", "/nowhere", 404, 0},
		{"POST", "/healthz", 404, 0},
	} {
		resp, br, c := servicetest.SendHead(t, addr, get(tt.method, tt.path))
		if resp.StatusCode != tt.first {
			t.Errorf("%s %s: %d before the upload, want %d", tt.method, tt.path, resp.StatusCode, tt.first)
			continue
		}
		if tt.final == 0 {
			continue
		}
		if _, err := c.Write([]byte("{}")); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest(tt.method, "http://relay"+tt.path, nil)
		final, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		_ = final.Body.Close()
		if final.StatusCode != tt.final {
			t.Errorf("%s %s: %d after the upload, want %d", tt.method, tt.path, final.StatusCode, tt.final)
		}
	}

	apart := &App{cfg: &Config{}}
	apart.cfg.Metrics.Addr = "127.0.0.1:9464"
	if paths := apart.ownPaths(); slices.Contains(paths, "/metrics") {
		t.Errorf("with metrics.addr set, the main port's own paths %v include /metrics", paths)
	}
}
