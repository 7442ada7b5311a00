package handlers

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/stream-relay/stream-relay/internal/mono"
	"github.com/stream-relay/stream-relay/quota"
	"github.com/stream-relay/stream-relay/record"
	"github.com/stream-relay/stream-relay/upstream"
	"github.com/stream-relay/stream-relay/usage"
	"github.com/valyala/fasthttp"
)

// Sink receives every finished record. It must copy what it keeps before it
// returns (the record's RequestBody may be the request's own buffer, which
// fasthttp reuses once the request ended) and must not block on I/O: it
// runs on the request's goroutine.
// An error means the record was not kept as promised (storage closed, a
// WAL write or fsync failed); the relay logs it, the sink counts it.
type Sink interface {
	Write(r *record.Record) error
}

// Admission reserves storage for a request before the relay answers it;
// chlog.Writer is the implementation. Admit may turn r's capture off (r
// then says Truncated, TruncatedReason storage_budget); false means not even
// a row without bodies can be stored: the request is refused with 503
// storage_overloaded. An admitted record is always stored.
type Admission interface {
	Admit(r *record.Record) bool
}

// Limiter admits requests per tenant; quota.Limiter is the implementation.
type Limiter interface {
	Take(ctx context.Context, tenant, keyID string) quota.Decision
	Debit(ctx context.Context, tenant string, tokens int64)
}

var _ Limiter = (*quota.Limiter)(nil)

// Observer is told when a relayed request starts; its end reaches the sinks
// as the finished record. Metrics use it for streams open now.
type Observer interface {
	Start(r *record.Record)
}

// Options wire a Relay.
type Options struct {
	Routes  *upstream.Table // required
	Keys    *Keys           // required; no keys means every relayed request is 401
	Limiter Limiter         // nil: no rate limits
	// Sinks are where finished records go, in order. Only the last may
	// take a large request body by reference (record.TakeRequestBody;
	// the record says so, record.LastReader): the storage goes last, or its
	// bodies are copied.
	Sinks []Sink
	// Admission, when set, is asked before a request is served (and before
	// an early error is answered); nil admits everything.
	Admission Admission
	Observer  Observer           // nil: none
	Watchdog  *upstream.Watchdog // required for idle timeouts and client-gone detection
	Instance  string             // relay instance name for records
	// TrustedProxies are the proxies whose X-Forwarded-For names the
	// client_ip of a request they forward (clientip.go); none by default.
	TrustedProxies Proxies
	// SmallStacks serves requests up to their response head, and streams'
	// ends, on helper goroutines (handoff.go).
	SmallStacks bool
	// ServeConn, when set, has streamed responses written apart from the
	// server (detach.go), which then serves the connection's next requests
	// through it (fasthttp.Server.ServeConn). The server must keep the
	// connections it lets go of (KeepHijackedConns). Ignored with
	// SmallStacks.
	ServeConn func(net.Conn) error
	// IdleWait: with ServeConn, a stream whose last two events came this
	// far apart or more waits for its next one without a goroutine
	// (upstream/idlewait.go); 0 or negative: never.
	IdleWait time.Duration
	// DetachAbove: with ServeConn, a streamed response is detached only
	// while more than this many relayed requests are in flight, its own
	// included; the server's goroutine writes the others, as without
	// ServeConn (detach.go). 0: every one.
	DetachAbove int64
	Logger      *slog.Logger // default slog.Default()
	// BodyLimit is the server's limit on a request body (its
	// MaxRequestBodySize): ExpectContinue refuses a larger declared
	// Content-Length on any path before the body is sent. 0: none.
	BodyLimit int64
	// OwnPaths are the paths the server answers itself for GET and HEAD,
	// in front of Handle (/healthz, ...): ExpectContinue lets a request
	// for one through instead of refusing it 404 as a path no route has.
	OwnPaths []string
	// DefaultCaptureBytes bounds capture for requests that match no route;
	// default 64 KiB.
	DefaultCaptureBytes int
}

// Config is the part of a Relay that a reload replaces: routes, keys and
// limits, swapped whole. A request reads it once, when it begins, and keeps
// it: a stream stays on the routes (and targets) it started with.
type Config struct {
	Routes  *upstream.Table // required
	Keys    *Keys           // required
	Limiter Limiter         // nil: no rate limits
}

// Swap makes c the configuration of every request that begins from now on.
func (h *Relay) Swap(c Config) error {
	if c.Routes == nil || c.Keys == nil {
		return errors.New("handlers: routes and keys are required")
	}
	h.cur.Store(&c)
	return nil
}

// Config returns the configuration new requests begin with.
func (h *Relay) Config() Config { return *h.cur.Load() }

// Relay serves relayed routes.
type Relay struct {
	o   Options
	cur atomic.Pointer[Config]
	log *slog.Logger
	// drainedAt is when (mono) Drain began, 0 before (draining): a
	// request that had begun arriving before is still served (gate).
	drainedAt atomic.Int64
	graceOver atomic.Bool // EndGrace: no request is served any more
	active    atomic.Int64
	sinkErrs  sinkErrors
	openErrs  openErrors
	ws        wsSessions  // open WebSocket sessions (ws.go)
	helpers   helpers     // goroutines that serve requests up to the response head (handoff.go)
	detached  detached    // goroutines that write detached streams and serve their connections (detach.go)
	retrieved *retrievals // the Responses responses whose usage was charged (retrievals.go)

	// connsClosing: CloseIdle began (the server shuts down): a detached
	// stream's connection is closed after it, not served again.
	connsClosing atomic.Bool
}

// New returns a Relay.
func New(o Options) (*Relay, error) {
	if o.Routes == nil {
		return nil, errors.New("handlers: routes are required")
	}
	if o.Keys == nil {
		return nil, errors.New("handlers: keys are required")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DefaultCaptureBytes == 0 {
		o.DefaultCaptureBytes = 64 << 10
	}
	h := &Relay{o: o, log: o.Logger, retrieved: newRetrievals()}
	h.helpers.init()
	h.detached.init()
	h.detached.resume = h.resumeDetached
	h.cur.Store(&Config{Routes: o.Routes, Keys: o.Keys, Limiter: o.Limiter})
	return h, nil
}

// Drain makes the relay refuse new relayed requests (503) and /readyz fail;
// in-flight streams go on, and so do requests that had begun to arrive (an
// upload under way: begunBeforeDrain); open WebSocket sessions are closed
// (1001).
func (h *Relay) Drain() {
	h.drainedAt.CompareAndSwap(0, mono.Now())
	h.ws.closeAll() // WebSocket sessions get 1001 at once (ws.go)
}

// CloseIdle ends the connections that wait for a next request after a
// detached stream (detach.go), and those such a stream leaves from now on:
// the server's own shutdown begins. Until then, during the drain, they are
// kept like the server's other kept-alive connections, and a request sent
// on one is answered 503 shutting_down, saying close (gate.go): closed at
// the drain, the next request after a stream that ended in it met the
// close (no status, no row).
func (h *Relay) CloseIdle() {
	h.connsClosing.Store(true)
	h.detached.drain()
}

// EndGrace ends the drain's grace period: from now on every request is
// refused, also one that had begun to arrive before the drain.
//
// An upload still arriving then on a connection a detached stream's
// goroutine serves is cut: answered 503 shutting_down (ServerError). It
// returns how many were cut (see UploadsUnderWay); the server's own
// connections are the app's to cut.
func (h *Relay) EndGrace() int {
	h.graceOver.Store(true)
	return h.detached.cutUploads()
}

// UploadsUnderWay returns how many connections served after a detached
// stream are inside a request: those EndGrace cut, until answered.
func (h *Relay) UploadsUnderWay() int { return h.detached.uploads() }

// Ready reports whether the relay takes traffic: false once it drains.
func (h *Relay) Ready() bool { return !h.draining() }

// draining reports whether Drain began.
func (h *Relay) draining() bool { return h.drainedAt.Load() != 0 }

// closeIfDraining makes an answer whose head goes out during the drain say
// Connection: close, a refusal's too: the connection ends with it, and the
// client sends its next request on a new connection (another instance)
// rather than into the close that follows, unanswered.
func (h *Relay) closeIfDraining(ctx *fasthttp.RequestCtx) {
	if h.draining() {
		ctx.Response.Header.SetConnectionClose()
	}
}

// Active returns the number of relayed requests in flight.
func (h *Relay) Active() int64 { return h.active.Load() }

// Wait blocks until every in-flight request has finished or ctx ends. It
// watches the count of requests in flight (a sync.WaitGroup would panic
// when a request refused during the drain was counted at the moment the
// last stream ended with Wait waiting: Add concurrent with Wait).
func (h *Relay) Wait(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for h.active.Load() > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Handle is the Fiber handler for every relayed path. With SmallStacks the
// request is served up to its response head on a helper goroutine
// (handoff.go); the stream itself is always written by the connection's
// own goroutine.
func (h *Relay) Handle(c *fiber.Ctx) error {
	if h.o.SmallStacks {
		h.handOff(c.Context())
	} else {
		h.serve(c.Context())
	}
	return nil
}

var (
	hdrRequestID  = []byte("X-Request-Id")
	hdrTenant     = []byte("X-Tenant-Id")
	hdrAPIKey     = []byte("X-Api-Key")
	hdrGoogAPIKey = []byte("X-Goog-Api-Key")
)

// begin starts the record of a request: id, route, client facts, and its
// admission by storage (admitted false: refuse it, see refuseOverloaded).
func (h *Relay) begin(ctx *fasthttp.RequestCtx) (rec *record.Record, rt *upstream.Route, admitted bool) {
	return h.beginOn(ctx, h.cur.Load())
}

// beginOn is begin with the configuration the request keeps.
func (h *Relay) beginOn(ctx *fasthttp.RequestCtx, cfg *Config) (rec *record.Record, rt *upstream.Route, admitted bool) {
	path := ctx.Path()
	rt = cfg.Routes.Find(path)
	rec, admitted = h.beginRecord(ctx, rt, ctx.Method(), path)
	return rec, rt, admitted
}

// beginRecord is begin for a request with the given method and path on
// route rt (nil: none), as far as they are known.
func (h *Relay) beginRecord(ctx *fasthttp.RequestCtx, rt *upstream.Route, method, path []byte) (rec *record.Record, admitted bool) {
	now := time.Now()
	limit := h.o.DefaultCaptureBytes
	if rt != nil {
		limit = rt.MaxCaptureBytes
	}
	rec = record.Acquire(limit)
	rec.Start = now
	newRequestID(&rec.ID, now)
	ctx.Response.Header.SetBytesKV(hdrRequestID, rec.ID[:])
	h.active.Add(1)

	rec.Instance = h.o.Instance
	rec.Method = methodString(method)
	rec.Path = string(path)
	rec.ClientIP = h.clientIP(ctx)
	rec.UserAgent = string(ctx.Request.Header.UserAgent())
	if rt != nil {
		rec.Route, rec.Kind, rec.Capture, rec.Upstream = rt.Name, rt.Kind, rt.Capture, rt.Upstream
	}
	if h.o.Observer != nil {
		h.o.Observer.Start(rec)
	}
	admitted = h.o.Admission == nil || h.o.Admission.Admit(rec)
	return rec, admitted
}

// overloadRetryAfter is the Retry-After of a 503 storage_overloaded, in
// seconds: about the time a spool group commit or an insert takes.
var overloadRetryAfter = []byte("1")

// refuseOverloaded answers a request storage could not admit.
func (h *Relay) refuseOverloaded(ctx *fasthttp.RequestCtx, rec *record.Record) {
	ctx.Response.Header.SetBytesV(fasthttp.HeaderRetryAfter, overloadRetryAfter)
	h.reject(ctx, rec, fasthttp.StatusServiceUnavailable, record.ErrStorageOverloaded, "storage is overloaded; retry later")
}

func (h *Relay) serve(ctx *fasthttp.RequestCtx) {
	h.closeIfDraining(ctx)
	cfg := h.cur.Load()
	rec, rt, admitted := h.beginOn(ctx, cfg)
	rec.BytesIn = int64(len(ctx.Request.Body()))
	path := ctx.Path()
	if !admitted {
		h.refuseOverloaded(ctx, rec)
		return
	}
	if rt == nil {
		// A valid relay key names its key and tenant in the row: path
		// probing by a caller with a key is told whose.
		requestKey(ctx, cfg, rec)
		h.reject(ctx, rec, fasthttp.StatusNotFound, record.ErrNotFound, "no route for this path")
		return
	}
	v := h.gate(ctx, cfg, rt, rec.BytesIn)
	v.name(rec)
	if v.status != 0 {
		h.reject(ctx, rec, v.status, v.errType, v.msg)
		return
	}
	if rt.Kind == record.KindWS && h.refuseBadHandshake(ctx, rec, rt) { // ws.go
		return
	}
	var rate upstream.RateLimit
	if cfg.Limiter != nil {
		d := takeRate(ctx, cfg, rec)
		if !d.Allowed {
			h.refuseRate(ctx, rec, d)
			return
		}
		rate = rateLimitOf(d)
	}
	hdr := &ctx.Request.Header
	body := ctx.Request.Body()
	if rt.Kind == record.KindWS {
		h.serveWS(ctx, rec, rt) // ws.go
		return
	}
	if rec.TruncatedReason != record.TruncStorageBudget {
		// By reference, not a copy: fasthttp keeps the body until it resets
		// the request, and a stream's record is finished while its response
		// is written, before that (finish checks it all the same); the
		// storage sink copies it into its block. Kept for the model even
		// when not stored.
		rec.BorrowRequestBody(body, &ctx.Request)
	}
	if len(rec.RequestBody) < len(body) {
		// Meta only by the storage budget, or the body cut at the capture
		// limit: finish would look for the model in what is kept, and a
		// model after megabytes of messages (an image first, the OpenAI
		// SDKs' order) is past it; so is a multipart upload's model
		// field, which the SDKs send after the file.
		rec.Model = usage.Model(body)
		if rec.Model == "" {
			rec.Model = usage.FormModel(body)
		}
	}
	if ce := ctx.Request.Header.Peek(fasthttp.HeaderContentEncoding); len(ce) > 0 && rec.Model == "" {
		// A compressed body (sent and stored as it came): finish's scan
		// of it would find no model.
		rec.Model = usage.CodedModel(ce, body)
	}
	var injected *[]byte
	// Chat completions only: stream_options is theirs, and other APIs
	// (Responses, Anthropic messages on a route that spans them) refuse
	// a parameter they do not know.
	if rt.InjectIncludeUsage && usage.APIForPath(rec.Path) == usage.OpenAIChat {
		injected = bodyPool.Get().(*[]byte)
		if b, ok := usage.InjectIncludeUsage((*injected)[:0], body); ok {
			*injected = b
			body = b
		}
	}
	in := upstream.Request{
		Ctx:    ctx,
		Header: hdr,
		Method: ctx.Method(),
		Path:   path,
		Query:  ctx.URI().QueryString(),
		Body:   body,
		Client: ctx.Conn(),
		Rate:   rate,
	}
	s, errType, status, err := rt.Open(&in, rec, &ctx.Response, h.o.Watchdog, h.finish)
	if injected != nil {
		bodyPool.Put(injected)
	}
	h.closeIfDraining(ctx) // the drain may have begun while the upstream answered
	if err != nil {
		h.openErrs.log(h.log, rec, errType, err)
		h.reject(ctx, rec, status, errType, openErrorMessage(errType, rt, err))
		return
	}
	if !ctx.Request.Header.IsHTTP11() {
		if s.Prepare(&ctx.Response, nil) {
			h.answerHTTP10(ctx, rec, s) // http10.go
		}
		return
	}
	var later upstream.Finisher
	if h.o.SmallStacks {
		later = h.finishApart
	} else if h.o.ServeConn != nil && ctx.Request.Header.IsHTTP11() && h.active.Load() > h.o.DetachAbove {
		if s.Prepare(&ctx.Response, nil) {
			h.detach(ctx, rec, s) // detach.go
		}
		return
	}
	s.SetBody(&ctx.Response, later)
}

var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// openErrorMessage is the message of the relay's answer to Open's failure
// err of type errType.
func openErrorMessage(errType string, rt *upstream.Route, err error) string {
	if errors.Is(err, upstream.ErrCutBeforeBody) {
		// The head came, then nothing (firstbody.go): said as the cut
		// of a stream already handed over is (cutanswer.go).
		if _, msg, ok := upstream.CutAnswer(errType); ok {
			return "route " + rt.Name + ": " + msg
		}
	}
	switch errType {
	case record.ErrUpstreamConfig:
		// The variable's name is the operator's business (the relay's
		// start and reload warn with it), not the caller's.
		return "route " + rt.Name + ": its provider key is not set on the relay"
	case record.ErrUpstreamConnect:
		return "route " + rt.Name + ": cannot connect to the upstream"
	case record.ErrUpstreamTimeout:
		return "route " + rt.Name + ": the upstream did not answer in time"
	case record.ErrShuttingDown: // cut at the end of shutdown_grace
		return "route " + rt.Name + ": the relay is shutting down"
	case record.ErrBadRequest: // the path (upstream.ErrDotSegment)
		return "route " + rt.Name + ": " + err.Error()
	}
	return "route " + rt.Name + ": the upstream closed the connection before answering, or its answer was malformed"
}

// reject answers with a JSON error and finishes the record. A request
// refused before its upstream request was built (which captures them) has
// its headers and the answer's captured here, redacted, as every row has.
func (h *Relay) reject(ctx *fasthttp.RequestCtx, rec *record.Record, status int, errType, msg string) {
	writeError(ctx, status, errType, msg)
	if len(rec.RequestHeaders) == 0 {
		rt := h.cur.Load().Routes.Find(ctx.Path())
		rec.RequestHeaders = rt.CaptureRequestHeaders(rec.RequestHeaders, &ctx.Request.Header)
	}
	if len(rec.ResponseHeaders) == 0 {
		rec.ResponseHeaders = upstream.CaptureResponseHeaders(rec.ResponseHeaders, &ctx.Response.Header)
	}
	rec.Status = status
	rec.ErrorType = errType
	rec.Duration = time.Since(rec.Start)
	h.finish(rec)
}

// finish hands a finished record to the sinks and returns it to its pool.
func (h *Relay) finish(rec *record.Record) {
	if rec.Duration == 0 {
		rec.Duration = time.Since(rec.Start)
	}
	if rec.Status == 0 {
		rec.Status = fasthttp.StatusOK
	}
	if !rec.BorrowedBodyValid() {
		// fasthttp reset the request before the response ended (a path
		// that does not write the response): the body is gone.
		h.log.Warn("request body released before the record was written: stored without it", "request_id", rec.IDString())
	}
	if rec.Model == "" {
		rec.Model = usage.RequestModel(rec.Path, rec.RequestBody)
	}
	if rec.Kind == record.KindSSE {
		in, out, ok := responseTokens(rec)
		if h.retrieved.zeroUsage(rec, ok) {
			in, out, ok = 0, 0, true // a read of a generation charged before (retrievals.go)
		}
		if ok {
			rec.TokensIn, rec.TokensOut = in, out
		}
	}
	for i, s := range h.o.Sinks {
		if i == len(h.o.Sinks)-1 {
			rec.LastReader() // the last sink may take the body
		}
		if err := s.Write(rec); err != nil {
			h.sinkErrs.log(h.log, rec, err)
		}
	}
	// The current limiter: one a reload replaced may be closed by now.
	if l := h.cur.Load().Limiter; l != nil {
		l.Debit(context.Background(), rec.Tenant, chargedTokens(rec))
	}
	if h.log.Enabled(context.Background(), slog.LevelDebug) {
		h.logRecord(rec)
	}
	record.Release(rec)
	h.active.Add(-1)
}

// responseTokens finds an sse response's token counts with its API's
// rules: in the captured body when it is whole (as `relay reparse` does on
// the stored row), else in the head and tail the record's window kept
// (capture: meta, past max_capture_bytes, a storage budget). Where capture
// kept more than the window's head (it stopped past it), all it kept is
// scanned instead of the head: a usage event it holds counts, as reparse
// counts it in the stored row.
func responseTokens(rec *record.Record) (in, out int64, ok bool) {
	api := usage.APIForPath(rec.Path)
	var t usage.Tokens
	if rec.Window == nil {
		t.Scan(api, rec.Chunks.Data) // every response byte was captured
	} else {
		head, tail, _ := rec.Window.Parts()
		data := rec.Chunks.Data
		if len(data) > len(head) {
			head = data
		}
		t.Scan(api, head)
		if len(data) > 0 && len(tail) > 0 && rec.Window.TailFollowsSeed() {
			// The tail goes on where capture stopped: an event the cut
			// split (a usage object) is scanned whole, across the seam.
			// A count scanned twice is set again to the same value.
			seam := data[max(0, len(data)-seamBytes):]
			tail = append(append(make([]byte, 0, len(seam)+len(tail)), seam...), tail...)
		}
		t.Scan(api, tail)
	}
	return t.CountsFor(rec.Path)
}

// seamBytes is how much of the captured response's end responseTokens
// scans again with a window's tail: more than the largest usage event
// (OpenAI Responses' response.completed, about 9 KiB).
const seamBytes = 16 << 10

func (h *Relay) logRecord(rec *record.Record) {
	h.log.Debug("request",
		"request_id", rec.IDString(), "route", rec.Route, "tenant", rec.Tenant, "key_id", rec.KeyID,
		"method", rec.Method, "path", rec.Path, "status", rec.Status, "error_type", rec.ErrorType,
		"ttfb_ms", ms(rec.TTFB), "ttft_ms", ms(rec.TTFT), "duration_ms", ms(rec.Duration),
		"bytes_in", rec.BytesIn, "bytes_out", rec.BytesOut, "chunks", rec.ChunkCount,
		"model", rec.Model, "tokens_in", rec.TokensIn, "tokens_out", rec.TokensOut, "truncated", rec.Truncated)
}

func ms(d time.Duration) float64 {
	if d < 0 {
		return -1
	}
	return float64(d.Microseconds()) / 1000
}

func setRateHeaders(h *fasthttp.ResponseHeader, d quota.Decision) {
	r := rateLimitOf(d)
	if r.Limit <= 0 {
		return
	}
	var b [20]byte
	h.SetBytesV("X-RateLimit-Limit", strconv.AppendInt(b[:0], r.Limit, 10))
	h.SetBytesV("X-RateLimit-Remaining", strconv.AppendInt(b[:0], r.Remaining, 10))
	h.SetBytesV("X-RateLimit-Reset", strconv.AppendInt(b[:0], r.Reset, 10))
}

// rateLimitOf is the decision d as its X-RateLimit-* headers give it.
func rateLimitOf(d quota.Decision) upstream.RateLimit {
	if d.Limit <= 0 {
		return upstream.RateLimit{}
	}
	return upstream.RateLimit{Limit: int64(d.Limit), Remaining: int64(max(d.Remaining, 0)), Reset: ceilSeconds(d.Reset)}
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

func methodString(m []byte) string {
	switch string(m) {
	case fasthttp.MethodPost:
		return fasthttp.MethodPost
	case fasthttp.MethodGet:
		return fasthttp.MethodGet
	case fasthttp.MethodPut:
		return fasthttp.MethodPut
	case fasthttp.MethodDelete:
		return fasthttp.MethodDelete
	case fasthttp.MethodPatch:
		return fasthttp.MethodPatch
	case fasthttp.MethodHead:
		return fasthttp.MethodHead
	case fasthttp.MethodOptions:
		return fasthttp.MethodOptions
	}
	return string(m)
}

// requestKey returns the relay key ctx's request carries (nil: none, or
// not one of cfg's), and names it and its tenant in rec.
func requestKey(ctx *fasthttp.RequestCtx, cfg *Config, rec *record.Record) *Key {
	hdr := &ctx.Request.Header
	key := cfg.Keys.Lookup(requestCredential(hdr, ctx.URI().QueryString()))
	if key != nil {
		rec.KeyID, rec.Tenant = key.ID, key.Tenant
		// The tenant X-Tenant-ID chose, where the key allows it, as the
		// gate stores it: a refused request's row went to the key's own.
		if t := hdr.PeekBytes(hdrTenant); len(t) > 0 && key.Allows(t) {
			rec.Tenant = key.tenant(t)
		}
	}
	return key
}
