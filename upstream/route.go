package upstream

import (
	"errors"
	"fmt"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/stream-relay/stream-relay/record"
	"github.com/valyala/fasthttp"
)

// Options configure one route. The zero value of each field means its
// default, as stated.
type Options struct {
	Name     string      // route name, for records and metrics (required)
	Path     string      // exact path, or a prefix when it ends in "/*" (required)
	Upstream string      // absolute http(s) base URL; the request path is appended (required)
	Kind     record.Kind // sse or raw

	// ProviderKey is sent upstream in AuthHeader; "" with KeyEnv set means
	// the variable was unset, and requests fail with upstream_config.
	ProviderKey string
	KeyEnv      string // name of the variable, for error messages
	AuthHeader  string // default "Authorization", sent as "Bearer <key>"; other headers get the bare key

	Headers map[string]string // sent when the client did not send them

	ConnectTimeout   time.Duration // default 10s
	FirstByteTimeout time.Duration // until the response headers; default 120s
	IdleTimeout      time.Duration // silence between chunks; default 120s
	Timeout          time.Duration // whole request; default 300s
	MaxConns         int           // connections to the upstream host; default 4096
	TLSSkipVerify    bool

	Capture         bool  // keep the request body and response chunks
	MaxCaptureBytes int   // per direction; default 4 MiB
	MaxBodyBytes    int64 // request body limit; default 32 MiB

	InjectIncludeUsage bool // add stream_options.include_usage to streaming requests

	// UnderscoreHeaders forwards request header fields whose names hold
	// an underscore; by default (false) they are dropped, as nginx does.
	UnderscoreHeaders bool
}

func (o *Options) setDefaults() {
	if o.AuthHeader == "" {
		o.AuthHeader = "Authorization"
	}
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = 10 * time.Second
	}
	if o.FirstByteTimeout == 0 {
		o.FirstByteTimeout = 120 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 120 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 300 * time.Second
	}
	if o.MaxConns == 0 {
		o.MaxConns = 4096
	}
	if o.MaxCaptureBytes == 0 {
		o.MaxCaptureBytes = 4 << 20
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 32 << 20
	}
}

// Route is one configured route, ready to open streams.
type Route struct {
	Options

	client   *fasthttp.HostClient
	scheme   []byte
	host     []byte
	basePath string // upstream URL path without the trailing slash
	prefix   bool
	match    string // exact path, or the prefix before "/*"

	authKey   []byte // header name
	authValue []byte // "Bearer <key>" or the bare key; nil when not configured
	extra     [][2][]byte
}

// ErrNoProviderKey is returned by Open when the route's provider key is unset.
var ErrNoProviderKey = errors.New("upstream: provider key not set")

// NewRoute validates o and binds the route to its host's pooled client.
func NewRoute(o Options, clients *Clients) (*Route, error) {
	o.setDefaults()
	if o.Name == "" {
		return nil, errors.New("upstream: name is required")
	}
	if !strings.HasPrefix(o.Path, "/") {
		return nil, fmt.Errorf("upstream: route %s: path=%q: must start with /", o.Name, o.Path)
	}
	u, err := url.Parse(o.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream: route %s: upstream=%q: must be an absolute http(s) URL", o.Name, o.Upstream)
	}
	r := &Route{
		Options:  o,
		scheme:   []byte(u.Scheme),
		host:     []byte(u.Host),
		basePath: strings.TrimSuffix(u.EscapedPath(), "/"),
		authKey:  []byte(textproto.CanonicalMIMEHeaderKey(o.AuthHeader)),
	}
	r.match, r.prefix = strings.CutSuffix(o.Path, "/*")
	if o.ProviderKey != "" {
		if strings.EqualFold(o.AuthHeader, "Authorization") {
			r.authValue = []byte("Bearer " + o.ProviderKey)
		} else {
			r.authValue = []byte(o.ProviderKey)
		}
	}
	for k, v := range o.Headers {
		r.extra = append(r.extra, [2][]byte{[]byte(k), []byte(v)})
	}
	r.client = clients.get(u, clientOptions{
		connectTimeout: o.ConnectTimeout,
		maxConns:       o.MaxConns,
		skipVerify:     o.TLSSkipVerify,
	})
	return r, nil
}

// Configured reports whether the route has its provider key (or needs none).
func (r *Route) Configured() bool { return r.authValue != nil || r.KeyEnv == "" }

// Matches reports whether path (normalized, without query) belongs to r.
func (r *Route) Matches(path string) bool {
	if !r.prefix {
		return path == r.match
	}
	return path == r.match || path == r.match+"/" ||
		strings.HasPrefix(path, r.match) && len(path) > len(r.match) && path[len(r.match)] == '/'
}

// Table finds the route for a request path: exact paths first, then the
// longest matching prefix.
type Table struct {
	exact    map[string]*Route
	prefixes []*Route // longest first
}

// NewTable indexes routes; their paths must be unique.
func NewTable(routes []*Route) *Table {
	t := &Table{exact: map[string]*Route{}}
	for _, r := range routes {
		if r.prefix {
			t.prefixes = append(t.prefixes, r)
		} else {
			t.exact[r.match] = r
		}
	}
	for i := 1; i < len(t.prefixes); i++ {
		for j := i; j > 0 && len(t.prefixes[j].match) > len(t.prefixes[j-1].match); j-- {
			t.prefixes[j], t.prefixes[j-1] = t.prefixes[j-1], t.prefixes[j]
		}
	}
	return t
}

// Find returns the route for path, or nil.
func (t *Table) Find(path []byte) *Route {
	if r, ok := t.exact[string(path)]; ok { // no allocation: map index by string(bytes)
		return r
	}
	for _, r := range t.prefixes {
		if r.Matches(string(path)) {
			return r
		}
	}
	return nil
}

// Routes returns every route, exact ones first.
func (t *Table) Routes() []*Route {
	out := make([]*Route, 0, len(t.exact)+len(t.prefixes))
	for _, r := range t.exact {
		out = append(out, r)
	}
	return append(out, t.prefixes...)
}
