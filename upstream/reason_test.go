package upstream

import (
	"net/url"
	"strings"
	"testing"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

func TestReasonPhrase(t *testing.T) {
	long := strings.Repeat("x", maxReasonLen+10)
	for _, tt := range []struct{ in, want string }{
		{"Overloaded", "Overloaded"},
		{"Site Is Overloaded", "Site Is Overloaded"},
		{"", ""},
		{"   ", ""},
		{"  Over   loaded  ", "Over loaded"},
		{"Over\r\nX-Injected: 1", "Over X-Injected: 1"},
		{"\r\n\r\nHTTP/1.1 200 OK", "HTTP/1.1 200 OK"},
		{"Over\x00\x7floaded\t", "Over loaded"},
		{"Überlastet", "berlastet"},
		{"\xff\xfe", ""},
		{long, long[:maxReasonLen]},
		{strings.Repeat("a", maxReasonLen-1) + " b", strings.Repeat("a", maxReasonLen-1)},
		{strings.Repeat("a", maxReasonLen-2) + " bc", strings.Repeat("a", maxReasonLen-2) + " b"},
	} {
		var buf [maxReasonLen]byte
		got := reasonPhrase(buf[:0], []byte(tt.in))
		if string(got) != tt.want {
			t.Errorf("reasonPhrase(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if len(got) > maxReasonLen {
			t.Errorf("reasonPhrase(%q): %d bytes, want at most %d", tt.in, len(got), maxReasonLen)
		}
	}
}

// statusLine is the first line resp would be written with.
func statusLine(resp *fasthttp.Response) string {
	h := resp.Header.String()
	return h[:strings.Index(h, "\r\n")]
}

// TestCommitStatusPhrase: commit passes an upstream's reason phrase to the
// client only for a status code fasthttp has no phrase for, made safe; a
// known code keeps its standard phrase whatever the upstream said. It
// allocates nothing.
func TestCommitStatusPhrase(t *testing.T) {
	for _, tt := range []struct {
		code         int
		phrase, want string
	}{
		{529, "Overloaded", "HTTP/1.1 529 Overloaded"},
		{529, "", "HTTP/1.1 529 Unknown Status Code"},
		{529, "\x01\x02", "HTTP/1.1 529 Unknown Status Code"},
		{599, "Network\rConnect Timeout", "HTTP/1.1 599 Network Connect Timeout"},
		{503, "Busy Now", "HTTP/1.1 503 Service Unavailable"},
		{200, "Fine", "HTTP/1.1 200 OK"},
	} {
		var s Stream
		s.hdr.SetStatusCode(tt.code)
		s.hdr.SetStatusMessage([]byte(tt.phrase))
		var resp fasthttp.Response
		(&Route{}).commit(&s, &record.Record{}, &resp, 0)
		if got := statusLine(&resp); got != tt.want {
			t.Errorf("%d %q: status line %q, want %q", tt.code, tt.phrase, got, tt.want)
		}
	}
	var s Stream
	s.hdr.SetStatusCode(529)
	s.hdr.SetStatusMessage([]byte("Overloaded"))
	var resp fasthttp.Response
	rec := &record.Record{}
	r := &Route{}
	r.commit(&s, rec, &resp, 0)
	if n := testing.AllocsPerRun(100, func() {
		resp.Reset()
		r.commit(&s, rec, &resp, 0)
	}); n != 0 {
		t.Errorf("commit allocates %v times passing an upstream's reason phrase", n)
	}
}

// TestStatusPhraseKeyMasked: an upstream's reason phrase that repeats the
// provider key (whole, or cut by the phrase's bound) reaches the client
// masked, as the same key in its headers does; it went out as it came.
func TestStatusPhraseKeyMasked(t *testing.T) {
	key := "sk-prov-ABCdef/123+xyz=secretKEY"
	r := &Route{secret: key, keyQuery: url.QueryEscape(key), keyJSON: strings.ReplaceAll(key, "/", `\/`)}
	for _, tt := range []struct{ phrase, want string }{
		{"key " + key, "HTTP/1.1 599 key [redacted]"},
		// Masked, then cut to the bound.
		{strings.Repeat("x", maxReasonLen-10) + " " + key, "HTTP/1.1 599 " + strings.Repeat("x", maxReasonLen-10) + " [redacted"},
		{"Overloaded", "HTTP/1.1 599 Overloaded"},
		// Query-escaped and cut by the bound: its beginning is masked.
		{"Bad request GET /v1beta/models?key=" + url.QueryEscape(key), "HTTP/1.1 599 Bad request GET /v1beta/models?key=[redacted]"},
		{"Bad GET /v1beta/models:generate?key=" + url.QueryEscape(key), "HTTP/1.1 599 Bad GET /v1beta/models:generate?key=[redacted]"},
	} {
		var resp fasthttp.Response
		r.setStatus(&resp, 599, []byte(tt.phrase))
		got := statusLine(&resp)
		if got != tt.want || strings.Contains(got, "sk-prov") || strings.Contains(got, "ABCdef") {
			t.Errorf("phrase %q: status line %q, want %q", tt.phrase, got, tt.want)
		}
		if n := len(got) - len("HTTP/1.1 599 "); n > maxReasonLen {
			t.Errorf("phrase %q: %d bytes of phrase, want at most %d", tt.phrase, n, maxReasonLen)
		}
	}
}
