package upstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
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
	Kind     record.Kind // sse, raw or ws (Upstream may then be ws:// or wss://)

	// ProviderKey is sent upstream in AuthHeader; "" with KeyEnv set means
	// the variable was unset, and requests fail with upstream_config.
	ProviderKey string
	KeyEnv      string // name of the variable, for error messages
	AuthHeader  string // default "Authorization", sent as "Bearer <key>"; other headers get the bare key
	AuthQuery   string // kind ws: the key goes in this query parameter instead of AuthHeader

	Headers map[string]string // sent when the client did not send them
	// SetHeaders are always sent, replacing what the client sent under
	// the same name: a setting the operator pins per route (an
	// OpenAI-Project, an internal token), which a tenant must not change.
	SetHeaders map[string]string

	ConnectTimeout   time.Duration // default 10s
	FirstByteTimeout time.Duration // until the response headers; default 120s
	IdleTimeout      time.Duration // silence between chunks; default 120s
	Timeout          time.Duration // whole request; default 300s
	MaxConns         int           // connections to the upstream host; default 4096
	// Methods are the request methods the route relays (AllowsMethod);
	// nil: any.
	Methods       []string
	TLSSkipVerify bool

	// ReadBufferBytes is a stream's upstream read buffer, held only while
	// received bytes wait in it; default 32 KiB, 256 KiB for KindRaw
	// (audio arrives in bulk: larger reads and client writes, fewer system
	// calls a MiB).
	ReadBufferBytes int

	Capture         bool  // keep the request body and response chunks
	MaxCaptureBytes int   // per direction; default 4 MiB
	MaxBodyBytes    int64 // request body limit; default 32 MiB

	InjectIncludeUsage bool // add stream_options.include_usage to streaming requests

	// UnderscoreHeaders forwards request header fields whose names hold
	// an underscore; by default (false) they are dropped, as nginx does.
	UnderscoreHeaders bool

	// Targets, when set, are the route's upstreams (Upstream, ProviderKey
	// and KeyEnv are then ignored); default one target made of those three.
	Targets  []Target
	Failover FailoverOptions
	Health   HealthOptions
	Logger   *slog.Logger // ejections and returns; default slog.Default()
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
	if o.ReadBufferBytes == 0 {
		o.ReadBufferBytes = defaultReadBufferBytes(o.Kind)
	}
	if o.MaxCaptureBytes == 0 {
		o.MaxCaptureBytes = 4 << 20
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 32 << 20
	}
	o.Failover.setDefaults()
	o.Health.setDefaults()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Route is one configured route, ready to open streams.
type Route struct {
	Options

	client   *fasthttp.HostClient
	dials    context.Context // Clients.AbortDials ends it: a WebSocket handshake waits under it
	scheme   []byte
	host     []byte
	basePath string // upstream URL path without the trailing slash
	prefix   bool
	match    string // exact path, or the prefix before "/*"

	authKey   []byte // header name
	authValue []byte // "Bearer <key>" or the bare key; nil when not configured
	keyQuery  string // secret as it goes in a query, when that differs (keymask.go)
	keyJSON   string // secret with '/' escaped as JSON may ("\/"), when that differs
	// secret is what answers are masked for (keymask.go): the provider
	// key, or without one a credential the route's headers send
	// (headerSecret).
	secret string
	extra  [][2][]byte
	forced [][2][]byte // SetHeaders, canonical names

	pool     *pool    // the targets; nil on a target's own copy of the route
	bufs     *bufPool // read buffers of ReadBufferBytes
	failover failoverSet
	// wsConns counts a ws route's open upstream connections (handshakes
	// included), against MaxConns: a session holds one for its life. The
	// Clients' count (wsCounter): a reload's route goes on with it.
	wsConns *atomic.Int64
}

// The bounds of Options.ReadBufferBytes.
const (
	MinReadBufferBytes = 4 << 10
	MaxReadBufferBytes = 16 << 20
)

// defaultReadBufferBytes is Options.ReadBufferBytes's default for kind.
func defaultReadBufferBytes(kind record.Kind) int {
	if kind == record.KindRaw {
		return 256 << 10
	}
	return readBufBytes
}

// ErrNoProviderKey is returned by Open when the route's provider key is unset.
var ErrNoProviderKey = errors.New("upstream: provider key not set")

// NewRoute validates o and binds each of the route's targets to its host's
// pooled client.
func NewRoute(o Options, clients *Clients) (*Route, error) {
	o.setDefaults()
	if o.Name == "" {
		return nil, errors.New("upstream: name is required")
	}
	if !strings.HasPrefix(o.Path, "/") {
		return nil, fmt.Errorf("upstream: route %s: path=%q: must start with /", o.Name, o.Path)
	}
	if o.Failover.MaxAttempts < 1 || o.Failover.MaxAttempts > MaxAttempts {
		return nil, fmt.Errorf("upstream: route %s: failover.max_attempts=%d: must be 1..%d", o.Name, o.Failover.MaxAttempts, MaxAttempts)
	}
	if o.ReadBufferBytes < MinReadBufferBytes || o.ReadBufferBytes > MaxReadBufferBytes {
		return nil, fmt.Errorf("upstream: route %s: read_buffer_bytes=%d: must be %d..%d", o.Name, o.ReadBufferBytes, MinReadBufferBytes, MaxReadBufferBytes)
	}
	r := &Route{Options: o, bufs: bufPoolOf(o.ReadBufferBytes)}
	for _, c := range o.Failover.On {
		switch c {
		case FailoverConnect:
			r.failover.connect = true
		case FailoverTimeout:
			r.failover.timeout = true
		case Failover429:
			r.failover.tooMany = true
		case Failover5xx:
			r.failover.server = true
		default:
			return nil, fmt.Errorf("upstream: route %s: failover.on=%q: must be connect, timeout, 429 or 5xx", o.Name, c)
		}
	}
	r.match, r.prefix = strings.CutSuffix(o.Path, "/*")
	p, err := newPool(r, clients)
	if err != nil {
		return nil, err
	}
	r.pool = p
	// The route itself speaks for its first target (Upstream, KeyEnv,
	// Configured), as a one-target route always did.
	first := p.targets[0].route
	r.Upstream, r.ProviderKey, r.KeyEnv = first.Upstream, first.ProviderKey, first.KeyEnv
	r.client, r.scheme, r.host, r.basePath, r.dials = first.client, first.scheme, first.host, first.basePath, first.dials
	r.authKey, r.authValue, r.extra, r.keyQuery, r.keyJSON, r.secret = first.authKey, first.authValue, first.extra, first.keyQuery, first.keyJSON, first.secret
	r.forced, r.wsConns = first.forced, first.wsConns
	for _, t := range p.targets {
		if t.route.Configured() {
			r.authValue, r.KeyEnv = t.route.authValue, t.route.KeyEnv
			break
		}
	}
	return r, nil
}

// forTarget returns a copy of r bound to target to: its URL, key and client.
func (r *Route) forTarget(to Target, clients *Clients) (*Route, error) {
	o := r.Options
	o.Upstream, o.ProviderKey, o.KeyEnv, o.Targets = to.URL, to.ProviderKey, to.KeyEnv, nil
	u, err := url.Parse(o.Upstream)
	if err == nil && o.Kind == record.KindWS {
		u.Scheme = httpScheme(u.Scheme) // see tunnel.go
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream: route %s: upstream=%q: must be an absolute http(s) URL", o.Name, o.Upstream)
	}
	t := &Route{
		Options:  o,
		scheme:   []byte(u.Scheme),
		host:     []byte(strings.ToLower(u.Host)), // as the Host header goes out
		basePath: strings.TrimSuffix(u.EscapedPath(), "/"),
		authKey:  []byte(textproto.CanonicalMIMEHeaderKey(o.AuthHeader)),
		match:    r.match,
		prefix:   r.prefix,
		bufs:     r.bufs,
	}
	t.secret = cmp.Or(o.ProviderKey, headerSecret(o.SetHeaders), headerSecret(o.Headers))
	if q := url.QueryEscape(t.secret); q != t.secret {
		t.keyQuery = q
	}
	if j := strings.ReplaceAll(t.secret, "/", `\/`); j != t.secret {
		// PHP's json_encode and others write '/' so: an error body
		// quoting a base64 key kept it.
		t.keyJSON = j
	}
	if o.ProviderKey != "" {
		if strings.EqualFold(o.AuthHeader, "Authorization") {
			t.authValue = []byte("Bearer " + o.ProviderKey)
		} else {
			t.authValue = []byte(o.ProviderKey)
		}
	}
	for k, v := range o.Headers {
		// Canonical, as the client's names come from fasthttp's parse:
		// the check for a client's own field compares them as they are
		// (copyRequestHeaders), and `anthropic-version` as configured went
		// upstream beside the client's Anthropic-Version.
		t.extra = append(t.extra, [2][]byte{[]byte(textproto.CanonicalMIMEHeaderKey(k)), []byte(v)})
	}
	for k, v := range o.SetHeaders {
		t.forced = append(t.forced, [2][]byte{[]byte(textproto.CanonicalMIMEHeaderKey(k)), []byte(v)})
	}
	t.dials = clients.dials
	if o.Kind == record.KindWS {
		t.wsConns = clients.wsCounter(o.Name + "|" + o.Upstream)
	}
	t.client = clients.get(u, clientOptions{
		connectTimeout: o.ConnectTimeout,
		maxConns:       o.MaxConns,
		skipVerify:     o.TLSSkipVerify,
	})
	return t, nil
}

// headerSecret returns the credential a route's headers send (a
// self-hosted server's key, with no auth_env), or "": an upstream's answer
// that repeats it is masked as one that repeats a provider key. One
// credential, the first of secretHeaders the headers set: Authorization's
// past its scheme ("Bearer KEY"), the others' whole. Cookies are not
// looked at (a cookie string is no one key).
func headerSecret(h map[string]string) string {
	for _, name := range secretHeaders {
		for k, v := range h {
			if !strings.EqualFold(k, name) {
				continue
			}
			v = strings.TrimSpace(v)
			if name == "Authorization" {
				if _, cred, ok := strings.Cut(v, " "); ok {
					v = strings.TrimSpace(cred)
				}
			}
			if v != "" {
				return v
			}
		}
	}
	return ""
}

// secretHeaders are the request headers headerSecret takes a route's
// credential from, in order.
var secretHeaders = []string{"Authorization", "X-Api-Key", "Api-Key", "X-Goog-Api-Key"}

func errTooManyTargets(route string, n int) error {
	return fmt.Errorf("upstream: route %s: upstreams: %d targets: at most 64", route, n)
}

func errNoPrimary(route string) error {
	return fmt.Errorf("upstream: route %s: upstreams: every target is a backup: at least one must be a primary", route)
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

// spelledOut reports whether the raw (not decoded) path p spells out the
// route's path: equal to an exact route's, or a prefix route's prefix
// followed by '/' or the end. Matches on bytes, without allocating.
func (r *Route) spelledOut(p []byte) bool {
	m := r.match
	if len(p) < len(m) || string(p[:len(m)]) != m {
		return false
	}
	if !r.prefix {
		return len(p) == len(m)
	}
	return len(p) == len(m) || p[len(m)] == '/'
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

// AllowsMethod reports whether the route relays requests of method m.
func (r *Route) AllowsMethod(m []byte) bool {
	if r.Methods == nil {
		return true
	}
	for _, a := range r.Methods {
		if a == string(m) {
			return true
		}
	}
	return false
}
