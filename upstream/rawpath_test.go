package upstream

import (
	"testing"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// TestHasDotSegment: a dot segment is found however it is spelled (dots
// percent-encoded, segments separated by an encoded '/' or a '\', with
// ";params"), and dots that are part of a name are not one.
func TestHasDotSegment(t *testing.T) {
	for p, want := range map[string]bool{
		"/v1/chat/completions":                      false,
		"/v1beta/models/models%2Fgemini-x:generate": false,
		"/v1/file.txt":                              false,
		"/v1/...":                                   false,
		"/v1/..a":                                   false,
		"/v1/.well-known/x":                         false,
		"/v1//x":                                    false,
		"/v1/%":                                     false,
		"/v1/%2":                                    false,
		"/v1/%zz.":                                  false,
		"/v1/a;..":                                  false,
		"/v1/..":                                    true,
		"/v1/.":                                     true,
		"/v1/./x":                                   true,
		"/v1/chat/completions/../../admin":          true,
		"/v1/%2e%2e/admin":                          true,
		"/v1/%2E%2E/admin":                          true,
		"/v1/.%2e/admin":                            true,
		"/v1/%2e/admin":                             true,
		"/v1/a%2F..%2Fadmin":                        true,
		"/v1/a%2f..%2fadmin":                        true,
		"/v1/a\\..\\admin":                          true,
		"/v1/a%5C..%5Cadmin":                        true,
		"/v1/..;/admin":                             true,
		"/v1/..;x=y/admin":                          true,
		"..":                                        true,
		"":                                          false,
		"/":                                         false,
	} {
		if got := hasDotSegment([]byte(p)); got != want {
			t.Errorf("hasDotSegment(%q) = %v, want %v", p, got, want)
		}
	}
}

// TestSpelledOut: the client's raw path must spell out the route's path.
func TestSpelledOut(t *testing.T) {
	exact := &Route{match: "/v1/chat/completions"}
	prefix := &Route{match: "/v1beta", prefix: true}
	root := &Route{match: "", prefix: true}
	for _, tc := range []struct {
		r    *Route
		p    string
		want bool
	}{
		{exact, "/v1/chat/completions", true},
		{exact, "/v1/chat/completions/", false},
		{exact, "/v1/chat%2Fcompletions", false},
		{exact, "/v1//chat/completions", false},
		{exact, "/v1/chat/completion%73", false},
		{exact, "/v1/chat", false},
		{prefix, "/v1beta", true},
		{prefix, "/v1beta/", true},
		{prefix, "/v1beta/models/models%2Fx:gen", true},
		{prefix, "/v1beta//x", true},
		{prefix, "/v1betax", false},
		{prefix, "/v1beta%2Fx", false},
		{prefix, "//v1beta/x", false},
		{root, "/", true},
		{root, "//x", true},
		{root, "x", false},
	} {
		if got := tc.r.spelledOut([]byte(tc.p)); got != tc.want {
			t.Errorf("route %q prefix %v: spelledOut(%q) = %v, want %v", tc.r.match, tc.r.prefix, tc.p, got, tc.want)
		}
	}
}

// TestAppendRawPath: escapes stay as sent; bytes that may not stand in a
// path are encoded.
func TestAppendRawPath(t *testing.T) {
	for p, want := range map[string]string{
		"/v1beta/models/models%2Fgemini-x:generateContent": "/v1beta/models/models%2Fgemini-x:generateContent",
		"/a%3Ab%20c%25d%2e//e":                             "/a%3Ab%20c%25d%2e//e",
		"/a|b\\c\"d<e>{f}^`":                               "/a%7Cb%5Cc%22d%3Ce%3E%7Bf%7D%5E%60",
		"/\xc3\xbc":                                        "/%C3%BC",
		"/%zz%":                                            "/%zz%",
	} {
		if got := string(appendRawPath(nil, []byte(p))); got != want {
			t.Errorf("appendRawPath(%q) = %q, want %q", p, got, want)
		}
	}
}

// TestClientPath: with the client's RequestCtx at hand the path it sent is
// the one used, checked; without it, none (the routed path is re-encoded).
func TestClientPath(t *testing.T) {
	r := &Route{match: "/v1beta", prefix: true}
	for _, tc := range []struct {
		uri, want string
		err       error
	}{
		{"/v1beta/models/models%2Fgemini-x:generateContent?alt=sse&key=k", "/v1beta/models/models%2Fgemini-x:generateContent", nil},
		{"http://relay.example/v1beta/a%20b#frag", "/v1beta/a%20b", nil},
		{"/v1beta/models/../../admin", "", ErrDotSegment},
		{"/v1beta/%2e%2e/admin", "", ErrDotSegment},
		{"/v1beta%2Fmodels/x", "", nil}, // not spelled out: the routed path goes
		{"//v1beta/x", "", nil},
	} {
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetHost("relay")
		rc.Request.SetRequestURI(tc.uri)
		in := &Request{Ctx: &rc, Path: rc.Path()}
		got, err := r.clientPath(in)
		if string(got) != tc.want || err != tc.err {
			t.Errorf("%q: clientPath = %q, %v; want %q, %v", tc.uri, got, err, tc.want, tc.err)
		}
	}
	if got, err := r.clientPath(&Request{Path: []byte("/v1beta/x")}); got != nil || err != nil {
		t.Errorf("without a RequestCtx: %q, %v", got, err)
	}
}

// TestBuildRequestRawTarget: the upstream request line's target is the
// base path, the client's raw path and the query without the relay key.
func TestBuildRequestRawTarget(t *testing.T) {
	r := &Route{match: "/v1beta", prefix: true, basePath: "/base", host: []byte("up")}
	var rc fasthttp.RequestCtx
	rc.Request.Header.SetHost("relay")
	rc.Request.Header.SetMethod("POST")
	rc.Request.SetRequestURI("/v1beta/models/models%2Fgemini-x%3AgenerateContent?alt=sse&key=sk-relay")
	in := &Request{Ctx: &rc, Header: &rc.Request.Header, Method: []byte("POST"), Path: rc.Path(), Query: rc.URI().QueryString()}
	raw, err := r.clientPath(in)
	if err != nil {
		t.Fatal(err)
	}
	in.raw = raw
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	r.buildRequest(req, in, record.Acquire(1<<10))
	if got, want := string(req.Header.RequestURI()), "/base/v1beta/models/models%2Fgemini-x%3AgenerateContent?alt=sse"; got != want {
		t.Errorf("target %q, want %q", got, want)
	}
}
